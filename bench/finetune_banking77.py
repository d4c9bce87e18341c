"""(12b, issue 14) Fine-tunes of all-MiniLM-L6-v2 on the BANKING77 training file on
this machine's CPU cores, through the worker's real training path, scored
honestly: today's defaults against the new 'auto', in one run.

    nice -n 15 .venv/bin/python bench/finetune_banking77.py [--configs today,auto,lora_auto] [--rows N] [--out FILE]

Data: a test split is carved once from the training file (10 %, stratified,
duplicates kept together, seed 2077: 1,003 rows) and never used for training,
early stopping or the choice of the epoch; the rest goes through the real
preflight like an upload (a seeded, stratified 10 % validation split: 8,100 /
900 rows). Configs:

- `today`: what 'auto' resolved for this dataset before issue 14 (lr 2e-4,
  8 epochs, batch 32, max_length 48 = p95 × 1.25, linear decay after 6 %
  warm-up, early stopping patience 2, the best validation epoch delivered);
- `auto`: what the platform's 'auto' resolves now (jobs.hyperparameters.resolve
  on this dataset's preflight report and the catalog's MiniLM facts);
- `lora_auto`: the same with method LoRA.

Reported per config: validation accuracy and macro-F1 (the selection split: the
best epoch's, optimistic by construction), test accuracy and macro-F1 (the
delivered model, once), train and wall time, examples/s. Reference (FACTS.md):
a plain fp32 loop reaches about 92.5 % in 12 minutes (≈ 85 examples/s).
"""
from __future__ import annotations

import argparse
import json
import tempfile
import time

import torch
from _banking77 import cpu, minilm_path, prepare_with_test, resolved

from workers.finetune import run_finetune
from workers.reporting import MemoryReporter
from workers.spec import FineTuneSpec

TODAY = {"epochs": 8, "learning_rate": 2e-4, "batch_size": 32, "max_length": 48, "warmup_ratio": 0.06,
         "weight_decay": 0.01, "early_stopping_patience": 2, "seed": 13}


def config(name: str, splits) -> tuple[str, dict]:
    if name == "today":
        return "full", dict(TODAY)
    method = "lora" if name.startswith("lora") else "full"
    return method, resolved(splits, minilm_path(), method=method)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--configs", default="today,auto", help="comma-separated: today, auto, lora_auto")
    parser.add_argument("--rows", type=int, help="a stratified subset of the rows left after the test split")
    parser.add_argument("--threads", type=int, help="torch threads (default: torch's, one per core)")
    parser.add_argument("--out", help="write the JSON here too")
    args = parser.parse_args()
    out: dict = {"torch": torch.__version__, "cpu": cpu(), "configs": {}}
    with tempfile.TemporaryDirectory() as workdir:
        splits = prepare_with_test(workdir, rows=args.rows)
        out["rows"] = {"train": splits.train_count, "validation": splits.validation_count, "test": splits.test_count}
        for name in args.configs.split(","):
            method, values = config(name, splits)
            spec = FineTuneSpec(task="text_classification", base_model_path=minilm_path(), train_file=splits.train_path,
                                validation_file=splits.validation_path, test_file=splits.test_path, labels=splits.labels,
                                output_dir=f"{workdir}/{name}/out", checkpoint_dir=f"{workdir}/{name}/ckpt",
                                method=method, device="cpu", torch_threads=args.threads, **values)
            started = time.perf_counter()
            result = run_finetune(spec, MemoryReporter())
            wall = time.perf_counter() - started
            best = result.best_metrics
            out["configs"][name] = {
                "method": method, "hyperparameters": values, "threads": torch.get_num_threads(),
                "precision": result.precision,
                "validation_accuracy": best["accuracy"], "validation_macro_f1": best["macro_f1"],
                "test_accuracy": result.test_metrics["accuracy"], "test_macro_f1": result.test_metrics["macro_f1"],
                "epochs_run": len(result.history), "refit": result.refit, "history": result.history,
                "train_seconds": round(result.train_seconds, 1), "wall_seconds": round(wall, 1),
                "examples_per_second": round(result.train_examples_seen / result.train_seconds, 1)}
            print(name, json.dumps({k: v for k, v in out["configs"][name].items() if k != "history"}), flush=True)
    print("\n| config | validation acc / F1 (selection) | test acc / F1 | epochs | refit | wall | examples/s |")
    print("| --- | --- | --- | --- | --- | --- | --- |")
    for name, r in out["configs"].items():
        print(f"| {name} | {100 * r['validation_accuracy']:.2f} / {100 * r['validation_macro_f1']:.2f} | "
              f"{100 * r['test_accuracy']:.2f} / {100 * r['test_macro_f1']:.2f} | {r['epochs_run']} | "
              f"{r['refit']['epochs'] if r['refit'] else '-'} | {r['wall_seconds'] / 60:.1f} min | {r['examples_per_second']} |")
    if args.out:
        with open(args.out, "w") as fh:
            json.dump(out, fh, indent=1)


if __name__ == "__main__":
    main()
