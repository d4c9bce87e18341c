"""Which modules LoRA should adapt on a LLaMA-style chat model: attention only (q,k,v,o) or attention and
MLP projections (gate, up, down), through the worker itself (`run_chat_finetune`), same data and steps.

    .venv/bin/python bench/chat_lora_targets.py [--model FOLDER] [--train 160] [--validation 40] [--epochs 2]

SmolLM2-135M-Instruct (as bench/chat_packing.py finds it), BANKING77 as chat (system prompt, the query as
the user message, the intent name as the reply; conversations drawn with a fixed seed, validation rows
apart from training rows). Reported per target set: trainable parameters, validation loss and perplexity
per epoch, exact match and token-F1 of greedy replies to the validation prompts (base model and
fine-tuned), trained tokens/s.
"""
from __future__ import annotations

import argparse
import csv
import json
import random
import tempfile
import time

from chat_packing import BANKING77, SYSTEM, smollm2_folder

TARGETS = {"attention": ["q_proj", "k_proj", "v_proj", "o_proj"],
           "attention+mlp": ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]}


def write(path: str, rows: list[dict]) -> None:
    with open(path, "w", encoding="utf-8") as fh:
        for row in rows:
            fh.write(json.dumps({"messages": [{"role": "system", "content": SYSTEM},
                                              {"role": "user", "content": row["text"]},
                                              {"role": "assistant", "content": row["category"]}]}) + "\n")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--model")
    parser.add_argument("--train", type=int, default=160)
    parser.add_argument("--validation", type=int, default=40)
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--learning-rate", type=float, default=2e-4)
    parser.add_argument("--threads", type=int)
    args = parser.parse_args()

    from workers.chat.train import run_chat_finetune
    from workers.reporting import MemoryReporter
    from workers.spec import ChatFineTuneSpec

    rows = list(csv.DictReader(BANKING77.open(encoding="utf-8")))
    random.Random(5).shuffle(rows)
    work = tempfile.mkdtemp()
    train, validation = f"{work}/train.jsonl", f"{work}/validation.jsonl"
    write(train, rows[:args.train])
    write(validation, rows[args.train:args.train + args.validation])
    folder = args.model or str(smollm2_folder())
    report = {"model": folder, "train": args.train, "validation": args.validation, "epochs": args.epochs, "runs": {}}
    for name, targets in TARGETS.items():
        out = tempfile.mkdtemp()
        spec = ChatFineTuneSpec(base_model_path=folder, train_file=train, validation_file=validation,
                                output_dir=f"{out}/out", checkpoint_dir=f"{out}/ckpt", method="lora", epochs=args.epochs,
                                learning_rate=args.learning_rate, batch_size=8, max_length=128, lora_targets=targets,
                                checkpoint_every_steps=10**6, early_stopping_patience=None,
                                eval_generations=args.validation, torch_threads=args.threads)
        reporter = MemoryReporter()
        started = time.perf_counter()
        result = run_chat_finetune(spec, reporter)
        trainable = next(m for _, m in reporter.events if "trainable parameters" in m)
        report["runs"][name] = {
            "targets": targets, "event": trainable, "seconds": round(time.perf_counter() - started, 1),
            "trained_tokens_per_second": round(result.train_tokens / result.train_seconds, 1),
            "tokens_per_second": round(result.input_tokens / result.train_seconds, 1),
            "history": [{k: round(v, 4) for k, v in h.items()} for h in result.history],
            "generation": result.generation, "precision": result.precision}
        print(name, json.dumps(report["runs"][name]), flush=True)
    print(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
