"""(issue 14) Which training options win on unseen data: every option against one
baseline, on reduced BANKING77 data, scored on a carved test split that no run
uses for training, early stopping or checkpoint choice — all in one run.

    nice -n 15 .venv/bin/python bench/finetune_options.py [--suite options|lora|auto] [--rows 2700] [--workers 2]
        [--cases a,b] [--out FILE]

Data: the test split (10 % of the training file, stratified, seed 2077) is carved
first and kept whole (1,003 rows); `--rows` rows of the rest (stratified) then go
through the real preflight like an upload (validation: 10 %, seed 13). The
baseline is `today`: what 'auto' resolved before issue 14 (lr 2e-4, 8 epochs,
batch 32, max_length p95 × 1.25, linear decay after 6 % warm-up, patience 2, bf16
autocast where the CPU has it, the best validation epoch delivered). Every other
case changes one thing (`seed_14` changes only the seed: the noise floor).

Suites: `options` (each option alone), `full` (the survivors on the whole file: `--rows 9000`), `lora` (LoRA settings against the full
`today`), `auto` (`today` and the new 'auto' — jobs.hyperparameters.resolve on
this data — each with seeds 13 and 14).

Cases run in `--workers` processes of one thread each (two 1-thread runs use a
2-core machine better than one 2-thread run when other processes take a core;
the timings are each run's own and only comparable within this run). Reported
per case: validation accuracy (best epoch: the selection split), test accuracy
and macro-F1, their difference to `today`, epochs run, train seconds.
"""
from __future__ import annotations

import argparse
import concurrent.futures
import json
import math
import multiprocessing
import shutil
import tempfile
import time

from _banking77 import minilm_path, prepare_with_test, resolved, token_lengths

TODAY = {"epochs": 8, "learning_rate": 2e-4, "batch_size": 32, "max_length": 48, "warmup_ratio": 0.06,
         "weight_decay": 0.01, "early_stopping_patience": 2, "seed": 13, "refit": False}


def round8(value: float) -> int:
    return max(16, int(math.ceil(value / 8)) * 8)


def percentile_from_histogram(lengths: dict, q: float) -> int:
    """The upper edge of the histogram bin that holds the q-th quantile."""
    edges, counts = lengths["histogram"]["edges"], lengths["histogram"]["counts"]
    want, seen = q * sum(counts), 0
    for high, n in zip(edges[1:], counts):
        seen += n
        if seen >= want:
            return min(high, lengths["max"])
    return lengths["max"]


LORA_ALL = ["query", "key", "value", "dense"]


def cases(lengths: dict, suite: str, auto: dict | None = None) -> dict[str, dict]:
    if suite == "lora":  # LoRA against the full fine-tune `today`
        return {
            "today": {},
            "lora_today": {"method": "lora", "learning_rate": 5e-4, "lora_r": 8, "lora_alpha": 16,
                           "lora_targets": ["query", "value"], "lora_head_modules": []},
            "lora_qv_pooler": {"method": "lora", "learning_rate": 5e-4, "lora_targets": ["query", "value"]},
            "lora_all_lr5e-4": {"method": "lora", "learning_rate": 5e-4, "lora_targets": LORA_ALL},
            "lora_all_lr1e-3": {"method": "lora", "learning_rate": 1e-3, "lora_targets": LORA_ALL},
            "lora_all_lr2e-3": {"method": "lora", "learning_rate": 2e-3, "lora_targets": LORA_ALL},
            "lora_all_r16_lr1e-3": {"method": "lora", "learning_rate": 1e-3, "lora_targets": LORA_ALL, "lora_r": 16,
                                    "lora_alpha": 32},
        }
    if suite == "full":  # the full file: the candidates the reduced-data suites left, one change each
        return {"today": {}, "head_lr_10": {"head_lr_multiplier": 10.0}, "batch_16": {"batch_size": 16},
                "plain_loop": {"learning_rate": 1e-4, "epochs": 6, "early_stopping_patience": None, "max_length": 64}}
    if suite == "auto":  # the new 'auto' (what jobs.hyperparameters.resolve gives this data) against today's, two seeds
        return {"today": {}, "today_seed_14": {"seed": 14}, "auto": dict(auto), "auto_seed_14": {**auto, "seed": 14}}
    return {
        "today": {},
        "seed_14": {"seed": 14},
        "refit": {"refit": True},
        "cosine": {"lr_scheduler": "cosine"},
        "layer_lr_decay_0.8": {"layer_lr_decay": 0.8},
        "label_smoothing_0.1": {"label_smoothing": 0.1},
        "average_last_3": {"average_last_epochs": 3},
        f"max_length_p99_{round8(percentile_from_histogram(lengths, 0.99))}": {
            "max_length": round8(percentile_from_histogram(lengths, 0.99))},
        f"max_length_max_{round8(lengths['max'])}": {"max_length": round8(lengths["max"])},
        "batch_16": {"batch_size": 16},
        "batch_64": {"batch_size": 64},
        "lr_1e-4": {"learning_rate": 1e-4},
        "lr_3e-4": {"learning_rate": 3e-4},
        "fp32": {"precision": "fp32"},
        "freeze_embeddings": {"freeze_embeddings": True},
        "no_early_stop": {"early_stopping_patience": None},
    }


def run_case(name: str, changes: dict, splits: dict, workdir: str) -> dict:
    import torch

    from workers.finetune import run_finetune
    from workers.reporting import MemoryReporter
    from workers.spec import FineTuneSpec

    folder = tempfile.mkdtemp(dir=workdir)
    values = {**TODAY, **changes}
    spec = FineTuneSpec(task="text_classification", base_model_path=minilm_path(), train_file=splits["train"],
                        validation_file=splits["validation"], test_file=splits["test"], labels=splits["labels"],
                        output_dir=f"{folder}/out", checkpoint_dir=f"{folder}/ckpt", device="cpu", torch_threads=1,
                        checkpoint_every_steps=10**6, **values)
    started = time.perf_counter()
    result = run_finetune(spec, MemoryReporter())
    wall = time.perf_counter() - started
    shutil.rmtree(folder, ignore_errors=True)
    return {"case": name, "changes": changes, "validation_accuracy": result.best_metrics["accuracy"],
            "validation_macro_f1": result.best_metrics["macro_f1"], "test_accuracy": result.test_metrics["accuracy"],
            "test_macro_f1": result.test_metrics["macro_f1"], "epochs_run": len(result.history),
            "best_epoch": max(result.history, key=lambda h: h["accuracy"])["epoch"] if result.history else None,
            "refit": result.refit, "train_seconds": round(result.train_seconds, 1), "wall_seconds": round(wall, 1),
            "examples_per_second": round(result.train_examples_seen / result.train_seconds, 1),
            "precision": result.precision, "threads": torch.get_num_threads()}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rows", type=int, default=2700, help="rows of the file left after the test split (train + validation)")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--suite", default="options", choices=["options", "lora", "auto", "full"])
    parser.add_argument("--cases", default="", help="comma-separated case names (default: all of the suite)")
    parser.add_argument("--out", help="write the JSON here too")
    args = parser.parse_args()
    workdir = tempfile.mkdtemp()
    prepared = prepare_with_test(workdir, rows=args.rows)
    lengths = token_lengths(prepared, minilm_path())
    splits = {"train": prepared.train_path, "validation": prepared.validation_path, "test": prepared.test_path,
              "labels": prepared.labels}
    chosen = cases(lengths, args.suite, resolved(prepared, minilm_path()) if args.suite == "auto" else None)
    if args.cases:
        wanted = args.cases.split(",")
        chosen = {k: v for k, v in chosen.items() if k in wanted or k == "today"}
    out = {"rows": {"train": prepared.train_count, "validation": prepared.validation_count, "test": prepared.test_count},
           "lengths": {k: lengths[k] for k in ("mean", "p50", "p95", "max")}, "baseline": TODAY, "cases": {}}
    print(json.dumps(out), flush=True)
    started = time.perf_counter()
    context = multiprocessing.get_context("spawn")
    with concurrent.futures.ProcessPoolExecutor(max_workers=args.workers, mp_context=context) as pool:
        futures = {pool.submit(run_case, name, changes, splits, workdir): name for name, changes in chosen.items()}
        for future in concurrent.futures.as_completed(futures):
            result = future.result()
            out["cases"][result["case"]] = result
            print(json.dumps(result), flush=True)
    base = out["cases"]["today"]
    for result in out["cases"].values():
        result["test_accuracy_vs_today"] = round(100 * (result["test_accuracy"] - base["test_accuracy"]), 2)
        result["test_macro_f1_vs_today"] = round(100 * (result["test_macro_f1"] - base["test_macro_f1"]), 2)
    out["wall_seconds"] = round(time.perf_counter() - started, 1)
    print("\n| case | validation acc (selection) | test acc | test macro-F1 | test acc vs today | epochs (best) | train s |")
    print("| --- | --- | --- | --- | --- | --- | --- |")
    for name in chosen:
        r = out["cases"][name]
        print(f"| {name} | {100 * r['validation_accuracy']:.2f} | {100 * r['test_accuracy']:.2f} | "
              f"{100 * r['test_macro_f1']:.2f} | {r['test_accuracy_vs_today']:+.2f} | {r['epochs_run']} ({r['best_epoch']}) | "
              f"{r['train_seconds']:.0f} |")
    if args.out:
        with open(args.out, "w") as fh:
            json.dump(out, fh, indent=1)
    shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    main()
