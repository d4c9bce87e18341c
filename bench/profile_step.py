"""(issue 14) Where a training step of all-MiniLM-L6-v2 on BANKING77 spends its
time on this machine's CPU, and what the engine's options change, each measured
in one run against today's loop on the same batches.

    nice -n 15 .venv/bin/python bench/profile_step.py [--rows 1536] [--rounds 3] [--steps 16] [--variants a,b]

1. Profile (torch.profiler) a few steps of today's loop: per-op self time, and
   the share of forward / backward / optimizer / collate.
2. Variants, interleaved in rounds (A B C … A B C …) so the noise of a shared
   machine falls on all of them alike; each round trains `--steps` optimizer
   steps from the same starting weights on the same batches. Reported: the
   median examples/s per variant and its ratio to today's loop, and the achieved
   GFLOP/s of the matmuls (counted analytically from the padded shapes: forward
   2·tokens·(4h² + 2h·ff) + attention 4·tokens·seq·h per layer, training 3×
   forward) against the machine's ≈ 375 GFLOP/s bf16 peak.

Variants: `today` (the loop before issue 14: torch's default AdamW — on CPU
the per-tensor one —, bf16 autocast, dynamic padding), `fused`
(fused AdamW), `pad8` / `pad16` (pad each batch to a multiple), `eager`
(attention without SDPA), `frozen_embeddings` (word embeddings not trained: no
30,522 × 384 gradient nor its AdamW update), `prefetch` (collate in a
background thread), `batch64`, `threads1` (one intra-op thread), `compile`
(torch.compile, dynamic shapes; its compile time reported apart; not in the
default list), `worker` (the worker's optimizer as it is now:
workers.finetune._optimizer) and `worker_frozen` (with freeze_embeddings).
Reported: the median round and the best round (other processes on a shared
machine only ever slow a round down).
"""
from __future__ import annotations

import argparse
import csv
import json
import statistics
import sys
import threading
import time
from pathlib import Path

import torch
from _banking77 import DEFAULT_INPUT, minilm_path

from workers.data import collate, encode, epoch_batches

PEAK_BF16_GFLOPS = 375.0


def load_examples(rows: int, max_length: int):
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(minilm_path())
    records = [{"text": r["text"], "label": r["category"]} for r in csv.DictReader(open(DEFAULT_INPUT, encoding="utf-8"))]
    labels = sorted({r["label"] for r in records})
    label_ids = {l: i for i, l in enumerate(labels)}
    started = time.perf_counter()  # the whole file, as the worker tokenizes it once before training
    encode(records, tokenizer, "text_classification", label_ids, max_length)
    TOKENIZE["rows"], TOKENIZE["seconds"] = len(records), round(time.perf_counter() - started, 3)
    records = records[::max(1, len(records) // rows)][:rows]  # spread over the file (it is sorted by label)
    return encode(records, tokenizer, "text_classification", label_ids, max_length), labels, tokenizer


TOKENIZE: dict = {}


def build(labels, attn: str = "sdpa"):
    from transformers import AutoModelForSequenceClassification
    from transformers.utils import logging

    logging.set_verbosity_error()
    torch.manual_seed(13)
    return AutoModelForSequenceClassification.from_pretrained(minilm_path(), num_labels=len(labels), use_safetensors=True,
                                                              attn_implementation=attn)


def matmul_flops(model, batch: dict) -> float:
    """Forward + backward (3× forward) FLOPs of the encoder's matmuls for this padded batch."""
    c = model.config
    b, s = batch["input_ids"].shape
    tokens = b * s
    per_layer = 2 * tokens * (4 * c.hidden_size ** 2 + 2 * c.hidden_size * c.intermediate_size) + 4 * tokens * s * c.hidden_size
    return 3.0 * c.num_hidden_layers * per_layer


def pad_to_multiple(batch: dict, multiple: int, pad_id: int) -> dict:
    length = batch["input_ids"].shape[1]
    extra = (-length) % multiple
    if not extra:
        return batch
    out = {}
    for key, value in batch.items():
        if key == "labels":
            out[key] = value
        else:
            fill = pad_id if key == "input_ids" else 0
            out[key] = torch.nn.functional.pad(value, (0, extra), value=fill)
    return out


class Variant:
    def __init__(self, name: str, labels, *, fused=False, pad=1, attn="sdpa", frozen=False, prefetch=False, batch=32,
                 threads=None, compile=False, worker=False, initial=None):
        self.name, self.fused, self.pad, self.frozen, self.prefetch, self.batch = name, fused, pad, frozen, prefetch, batch
        self.threads, self.compile = threads, compile
        self.model = build(labels, attn)
        if initial is not None:
            self.model.load_state_dict(initial)
        if frozen:
            self.model.get_input_embeddings().weight.requires_grad_(False)
        self.model.train()
        params = [p for p in self.model.parameters() if p.requires_grad]
        if worker:  # the worker's own optimizer (workers.finetune._optimizer: grouped decay, fused where available)
            from workers.finetune import _optimizer
            from workers.spec import FineTuneSpec

            spec = FineTuneSpec(task="text_classification", base_model_path="", train_file="", validation_file="",
                                labels=labels, output_dir="", checkpoint_dir="", learning_rate=1e-4, freeze_embeddings=frozen)
            self.optimizer = _optimizer(self.model, spec, torch.device("cpu"))
        else:
            self.optimizer = torch.optim.AdamW(params, lr=1e-4, weight_decay=0.01, fused=True if fused else None)
        self.forward = torch.compile(self.model, dynamic=True) if compile else self.model
        self.compile_seconds = 0.0

    def batches(self, examples, pad_id, steps: int, round_: int):
        order = epoch_batches(examples, self.batch, seed=13, epoch=round_, group_by_length=True)
        order = (order * (steps // max(1, len(order)) + 1))[:steps]
        make = lambda idx: pad_to_multiple(collate(examples, idx, pad_id), self.pad, pad_id)  # noqa: E731
        if not self.prefetch:
            for idx in order:
                yield make(idx)
            return
        # One batch ahead, made on another thread while this one trains.
        import queue

        ready: queue.Queue = queue.Queue(maxsize=2)

        def produce():
            for idx in order:
                ready.put(make(idx))
            ready.put(None)

        threading.Thread(target=produce, daemon=True).start()
        while (item := ready.get()) is not None:
            yield item

    def step(self, batch: dict) -> None:
        with torch.autocast("cpu", dtype=torch.bfloat16):
            loss = self.forward(**batch).loss
        loss.backward()
        torch.nn.utils.clip_grad_norm_([p for p in self.model.parameters() if p.requires_grad], 1.0)
        self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)

    def run(self, examples, pad_id, steps: int, round_: int) -> dict:
        previous = torch.get_num_threads()
        if self.threads:
            torch.set_num_threads(self.threads)
        seen = flops = 0.0
        started = time.perf_counter()
        for batch in self.batches(examples, pad_id, steps, round_):
            self.step(batch)
            seen += len(batch["labels"])
            flops += matmul_flops(self.model, batch)
        seconds = time.perf_counter() - started
        torch.set_num_threads(previous)
        return {"examples_per_second": seen / seconds, "gflops": flops / seconds / 1e9}


def profile_today(examples, labels, pad_id, steps: int) -> dict:
    from torch.profiler import ProfilerActivity, profile, record_function

    model = build(labels).train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4, weight_decay=0.01)
    order = epoch_batches(examples, 32, seed=13, epoch=0, group_by_length=True)
    for idx in order[:3]:  # warm up (oneDNN primitives per shape)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            model(**collate(examples, idx, pad_id)).loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
    phases = {"collate": 0.0, "forward": 0.0, "backward": 0.0, "clip": 0.0, "optimizer": 0.0}
    with profile(activities=[ProfilerActivity.CPU], record_shapes=False) as prof:
        for idx in order[3:3 + steps]:
            t = time.perf_counter()
            with record_function("collate"):
                batch = collate(examples, idx, pad_id)
            phases["collate"] += time.perf_counter() - t
            t = time.perf_counter()
            with record_function("forward"), torch.autocast("cpu", dtype=torch.bfloat16):
                loss = model(**batch).loss
            phases["forward"] += time.perf_counter() - t
            t = time.perf_counter()
            with record_function("backward"):
                loss.backward()
            phases["backward"] += time.perf_counter() - t
            t = time.perf_counter()
            with record_function("clip"):
                torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            phases["clip"] += time.perf_counter() - t
            t = time.perf_counter()
            with record_function("optimizer"):
                optimizer.step()
                optimizer.zero_grad(set_to_none=True)
            phases["optimizer"] += time.perf_counter() - t
    total = sum(phases.values())
    table = prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=25)
    ops = sorted((e for e in prof.key_averages() if e.key not in phases), key=lambda e: -e.self_cpu_time_total)
    op_total = sum(e.self_cpu_time_total for e in ops)
    return {"steps": steps, "seconds_per_step": round(total / steps, 4),
            "phase_share": {k: round(v / total, 3) for k, v in phases.items()},
            "top_ops_self_share": [{"op": e.key, "share": round(e.self_cpu_time_total / op_total, 3),
                                    "calls_per_step": round(e.count / steps, 1)} for e in ops[:15]],
            "table": table}


VARIANTS = {
    "today": {}, "fused": {"fused": True}, "pad8": {"pad": 8}, "pad16": {"pad": 16}, "eager": {"attn": "eager"},
    "frozen_embeddings": {"frozen": True}, "prefetch": {"prefetch": True}, "batch64": {"batch": 64},
    "threads1": {"threads": 1}, "compile": {"compile": True},
    "fused_frozen": {"fused": True, "frozen": True},
    "worker": {"worker": True}, "worker_frozen": {"worker": True, "frozen": True},
}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rows", type=int, default=1536)
    parser.add_argument("--max-length", type=int, default=48)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--steps", type=int, default=16, help="optimizer steps per variant per round (batch 64: half)")
    parser.add_argument("--profile-steps", type=int, default=8)
    parser.add_argument("--variants", default="today,fused,pad8,eager,frozen_embeddings,prefetch,batch64,threads1,worker,"
                                              "worker_frozen")
    parser.add_argument("--out", help="write the JSON here too")
    args = parser.parse_args()
    examples, labels, tokenizer = load_examples(args.rows, args.max_length)
    pad_id = tokenizer.pad_token_id or 0
    out: dict = {"torch": torch.__version__, "threads": torch.get_num_threads(), "rows": len(examples),
                 "max_length": args.max_length, "peak_bf16_gflops": PEAK_BF16_GFLOPS,
                 "tokenize_whole_file": TOKENIZE}
    if args.profile_steps:
        out["profile"] = profile_today(examples, labels, pad_id, args.profile_steps)
        print(out["profile"].pop("table"), flush=True)
        print(json.dumps(out["profile"], indent=1), flush=True)
    initial = build(labels).state_dict()
    names = [n for n in args.variants.split(",") if n]
    variants = {n: Variant(n, labels, initial=initial, **VARIANTS[n]) for n in names}
    for name, variant in variants.items():  # warm-up: oneDNN primitives, compile
        started = time.perf_counter()
        variant.run(examples, pad_id, 4, round_=99)
        variant.compile_seconds = time.perf_counter() - started
    runs: dict[str, list[dict]] = {n: [] for n in names}
    for round_ in range(args.rounds):
        for name, variant in variants.items():
            steps = args.steps // 2 if variant.batch == 64 else args.steps
            runs[name].append(variant.run(examples, pad_id, steps, round_))
            print(round_, name, {k: round(v, 1) for k, v in runs[name][-1].items()}, flush=True)
    base = statistics.median(r["examples_per_second"] for r in runs[names[0]])
    best_base = max(r["examples_per_second"] for r in runs[names[0]])
    # The best round of each, too: other processes on a shared machine only ever slow a round down.
    out["variants"] = {
        n: {"examples_per_second": round(statistics.median(r["examples_per_second"] for r in rs), 1),
            "ratio_to_" + names[0]: round(statistics.median(r["examples_per_second"] for r in rs) / base, 3),
            "best_round_examples_per_second": round(max(r["examples_per_second"] for r in rs), 1),
            "best_round_ratio": round(max(r["examples_per_second"] for r in rs) / best_base, 3),
            "best_round_gflops": round(max(r["gflops"] for r in rs), 1),
            "gflops": round(statistics.median(r["gflops"] for r in rs), 1),
            "share_of_peak": round(statistics.median(r["gflops"] for r in rs) / PEAK_BF16_GFLOPS, 3),
            "runs": [round(r["examples_per_second"], 1) for r in rs],
            "warmup_seconds": round(variants[n].compile_seconds, 1)} for n, rs in runs.items()}
    print(json.dumps(out["variants"], indent=1))
    if args.out:
        Path(args.out).write_text(json.dumps(out, indent=1))


if __name__ == "__main__":
    sys.exit(main())
