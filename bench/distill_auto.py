"""(issue 18) A distillation on 'auto', as the newcomer walk runs one: is the student judged fairly, and
does it come within the guard? One teacher, every case distilled from it, in one run.

    nice -n 15 .venv/bin/python bench/distill_auto.py [--rows 1155] [--cases a,b] [--out FILE]

Data: BANKING77's carved test split (10 %, seed 2077, kept whole) and `--rows` rows of the rest
(stratified; 0: all of it) through the real preflight (validation 10 %, seed 13) — the walk's
15-per-label slice by default. The teacher is all-MiniLM-L6-v2 fine-tuned on the platform's 'auto'
for this data (jobs.hyperparameters.resolve), which refits on train + validation at the end.

Each case distils a student of half the teacher's layers (the walk's default) through the worker's
compression code with the training the platform resolves, and reports its accuracy next to the
teacher's on both splits:
- validation: what the guard measured before (the refit teacher trained on these rows);
- test: what the guard measures now for a refit source (staging.guard_rows_of_derived) — rows
  neither model trained on or chose by.
Cases: `fine_tune_auto` (the student trained on the fine-tune's 'auto', as before), `student_auto`
(resolve(student=True): twice the epochs, at most 15, at 1.5 times the learning rate).
"""
from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
import time

from _banking77 import minilm_path, prepare_with_test, resolved


def accuracy_on(folder: str, path: str, labels: list[str], max_length: int) -> float:
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    from workers.compression.measure import accuracy
    from workers.data import read_jsonl

    model = AutoModelForSequenceClassification.from_pretrained(folder, use_safetensors=True).eval()
    return accuracy(model, AutoTokenizer.from_pretrained(folder), read_jsonl(path), task="text_classification",
                    labels=labels, max_length=max_length)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rows", type=int, default=1155, help="rows of the file after the test split (0: all)")
    parser.add_argument("--cases", default="", help="comma-separated case names (default: all)")
    parser.add_argument("--out", help="write the JSON here too")
    args = parser.parse_args()

    from workers.compression.run import CompressionSpec, run_compression
    from workers.finetune import run_finetune
    from workers.reporting import MemoryReporter
    from workers.spec import FineTuneSpec

    workdir = tempfile.mkdtemp()
    splits = prepare_with_test(workdir, rows=args.rows or None)
    teacher_training = resolved(splits, minilm_path())
    out = {"rows": {"train": splits.train_count, "validation": splits.validation_count, "test": splits.test_count},
           "teacher_training": teacher_training, "cases": {}}
    started = time.perf_counter()
    teacher = FineTuneSpec(task="text_classification", base_model_path=minilm_path(), train_file=splits.train_path,
                           validation_file=splits.validation_path, test_file=splits.test_path, labels=splits.labels,
                           output_dir=f"{workdir}/teacher", checkpoint_dir=f"{workdir}/teacher-ckpt",
                           checkpoint_every_steps=10**6, **teacher_training)
    result = run_finetune(teacher, MemoryReporter())
    teacher_dir, max_length = f"{workdir}/teacher/model", teacher_training["max_length"]
    out["teacher"] = {"seconds": round(time.perf_counter() - started, 1), "refit": result.refit,
                      "selection_validation_accuracy": result.best_metrics["accuracy"],
                      "validation_accuracy": accuracy_on(teacher_dir, splits.validation_path, splits.labels, max_length),
                      "test_accuracy": result.test_metrics["accuracy"]}
    print(json.dumps(out), file=sys.stderr, flush=True)
    cases = {"fine_tune_auto": resolved(splits, minilm_path()),
             "student_auto": resolved(splits, minilm_path(), student=True)}
    wanted = [c for c in args.cases.split(",") if c]
    for name, training in cases.items():
        if wanted and name not in wanted:
            continue
        started = time.perf_counter()
        spec = CompressionSpec(kind="distill", source_model_dir=teacher_dir, eval_file=splits.test_path,
                               validation_seen_by_source=splits.validation_path, train_file=splits.train_path,
                               output_dir=f"{workdir}/{name}", checkpoint_dir=f"{workdir}/{name}-ckpt",
                               task="text_classification", max_length=max_length, max_accuracy_drop=1.0,
                               training={k: v for k, v in training.items() if k != "refit"})
        report = run_compression(spec, MemoryReporter())
        student_dir = f"{workdir}/{name}/model"
        validation = accuracy_on(student_dir, splits.validation_path, splits.labels, max_length)
        out["cases"][name] = {
            "training": {k: training[k] for k in ("epochs", "learning_rate", "batch_size")},
            "seconds": round(time.perf_counter() - started, 1),
            "validation_accuracy": validation,
            "validation_drop_points": round(100 * (out["teacher"]["validation_accuracy"] - validation), 2),
            "test_accuracy": report["after"]["accuracy"], "test_drop_points": report["guard"]["accuracy_drop_points"],
            "guard_passed_on_test": report["guard"]["passed"],
            "throughput_speedup": report["ratios"]["throughput_speedup"]}
        print(name, json.dumps(out["cases"][name]), file=sys.stderr, flush=True)
    print(json.dumps(out, indent=1))
    if args.out:
        with open(args.out, "w") as fh:
            json.dump(out, fh, indent=1)
    shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    main()
