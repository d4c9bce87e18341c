"""(12a) The platform's training path against a plain PyTorch/transformers loop
on the same model, data, batches and settings, in one process.

    .venv/bin/python bench/training_overhead.py [--rows 2000] [--repeats 2]

Both train one epoch of MiniLM-L6 on the first --rows of BANKING77 (length-grouped
dynamic padding, batch 32, AdamW, linear schedule), alternating runs to cancel
drift; reported: examples/s of each and the platform's overhead. The platform
run includes what it does that the plain loop does not: progress/metric
reporting, checkpoints at the default cadence (every 200 steps + best), the
lease check before each, evaluation, and the export after timing stops.
"""
from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time

import torch
from _banking77 import minilm_path, prepare

from workers.data import collate, encode, epoch_batches, read_jsonl
from workers.finetune import build_model, seed_everything
from workers.reporting import MemoryReporter
from workers.spec import FineTuneSpec


def plain_loop(spec: FineTuneSpec) -> float:
    """The reference: nothing but the training steps."""
    from transformers import get_linear_schedule_with_warmup

    seed_everything(spec.seed)
    tokenizer, model, label_ids = build_model(spec)
    examples = encode(read_jsonl(spec.train_file), tokenizer, spec.task, label_ids, spec.max_length)
    batches = epoch_batches(examples, spec.batch_size, seed=spec.seed, epoch=0, group_by_length=True)
    optimizer = torch.optim.AdamW(model.parameters(), lr=spec.learning_rate, weight_decay=spec.weight_decay)
    scheduler = get_linear_schedule_with_warmup(optimizer, int(0.06 * len(batches)), len(batches))
    model.train()
    started = time.perf_counter()
    for batch_indices in batches:
        batch = collate(examples, batch_indices, tokenizer.pad_token_id)
        loss = model(**batch).loss
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        scheduler.step()
        optimizer.zero_grad(set_to_none=True)
    return len(examples) / (time.perf_counter() - started)


def platform_loop(spec: FineTuneSpec) -> float:
    from workers.finetune import run_finetune

    reporter = MemoryReporter()
    result = run_finetune(spec, reporter)
    return result.train_examples_seen / result.train_seconds


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rows", type=int, default=2000)
    parser.add_argument("--repeats", type=int, default=2)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as workdir:
        prepared, labels = prepare(workdir)
        subset = f"{workdir}/subset.jsonl"
        with open(prepared.train_path) as src, open(subset, "w") as dst:
            for i, line in zip(range(args.rows), src):
                dst.write(line)
        tiny_validation = f"{workdir}/tiny_validation.jsonl"
        with open(prepared.validation_path) as src, open(tiny_validation, "w") as dst:
            for i, line in zip(range(1), src):
                dst.write(line)
        rows_labels = sorted({json.loads(line)["label"] for line in open(subset)} | {json.loads(line)["label"] for line in open(tiny_validation)})
        plain, platform = [], []
        for repeat in range(args.repeats):
            common = dict(task="text_classification", base_model_path=minilm_path(), train_file=subset, labels=rows_labels,
                          epochs=1, batch_size=32, learning_rate=8e-5, max_length=48, precision="fp32", device="cpu",
                          early_stopping_patience=None)
            plain.append(plain_loop(FineTuneSpec(validation_file=tiny_validation, output_dir=f"{workdir}/p{repeat}",
                                                 checkpoint_dir=f"{workdir}/pc{repeat}", **common)))
            platform.append(platform_loop(FineTuneSpec(validation_file=tiny_validation, output_dir=f"{workdir}/o{repeat}",
                                                       checkpoint_dir=f"{workdir}/c{repeat}",
                                                       **common)))
            print(f"run {repeat + 1}: plain {plain[-1]:.1f} ex/s, platform {platform[-1]:.1f} ex/s", flush=True)
        p, q = statistics.median(plain), statistics.median(platform)
        print(f"rows {args.rows}, batch 32, max_length 48, fp32, {torch.get_num_threads()} threads, median of {args.repeats}")
        print("| loop | examples/s |")
        print("| --- | --- |")
        print(f"| plain PyTorch/transformers | {p:.1f} |")
        print(f"| Lathe worker (reporting, checkpoints, lease checks, eval) | {q:.1f} |")
        print(f"| overhead | {100 * (p - q) / p:+.1f} % |")


if __name__ == "__main__":
    main()
