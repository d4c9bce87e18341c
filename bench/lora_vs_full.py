"""The estimator's default LoRA/full throughput ratio (platform/jobs/estimates.py):
the worker's `run_finetune` on MiniLM-L6, full and LoRA alternating, one epoch
of the first --rows of BANKING77 (batch 32, max_length 48, precision auto).

    .venv/bin/python bench/lora_vs_full.py [--rows 480] [--pairs 3]

Reported per run: the training loop's tokens/s (the real tokens it processed,
as jobs record them in `throughput`) and tokens per CPU-second of the whole
run (less sensitive to other processes on a shared machine); then the medians
and the LoRA/full ratio.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import tempfile
import time

from _banking77 import minilm_path, prepare

from workers.finetune import run_finetune
from workers.reporting import MemoryReporter
from workers.spec import FineTuneSpec


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rows", type=int, default=480)
    parser.add_argument("--pairs", type=int, default=3)
    args = parser.parse_args()
    work = tempfile.mkdtemp()
    result, labels = prepare(work)
    train, validation = os.path.join(work, "bench-train.jsonl"), os.path.join(work, "bench-validation.jsonl")
    with open(result.train_path) as src, open(train, "w") as dst:
        dst.writelines(line for _, line in zip(range(args.rows), src))
    with open(result.validation_path) as src, open(validation, "w") as dst:
        dst.writelines(line for _, line in zip(range(64), src))
    runs: dict[str, list[dict]] = {"full": [], "lora": []}
    for _ in range(args.pairs):
        for method in runs:
            folder = tempfile.mkdtemp()
            spec = FineTuneSpec(task="text_classification", base_model_path=minilm_path(), train_file=train,
                                validation_file=validation, labels=labels, output_dir=f"{folder}/out",
                                checkpoint_dir=f"{folder}/checkpoints", method=method, epochs=1, batch_size=32,
                                max_length=48, learning_rate=2e-4, checkpoint_every_steps=10**6, early_stopping_patience=0)
            cpu = time.process_time()
            outcome = run_finetune(spec, MemoryReporter())
            cpu = time.process_time() - cpu
            run = {"tokens_per_second": round(outcome.train_tokens / outcome.train_seconds, 1),
                   "tokens_per_cpu_second": round(outcome.train_tokens / cpu, 1), "precision": outcome.precision}
            runs[method].append(run)
            print(method, run, flush=True)
    summary = {method: {key: statistics.median(r[key] for r in rs) for key in ("tokens_per_second", "tokens_per_cpu_second")}
               for method, rs in runs.items()}
    summary["lora_over_full"] = {key: round(summary["lora"][key] / summary["full"][key], 2) for key in summary["full"]}
    print(json.dumps({"runs": runs, "median": summary}, indent=1))


if __name__ == "__main__":
    main()
