"""The one harness every before/after report uses, on the same machine and
settings: size on disk, parameters (total and non-zero), CPU latency p50/p95
at batch 1, throughput at batch 32, accuracy and macro-F1."""
from __future__ import annotations

import os
import statistics
import time

import torch

from ..data import collate, encode
from ..evaluation import classification_metrics


def folder_size(folder: str) -> int:
    return sum(os.path.getsize(os.path.join(root, f)) for root, _d, files in os.walk(folder) for f in files)


def parameter_counts(model: torch.nn.Module) -> dict[str, int]:
    """Total and non-zero weights, counting int8-quantized Linear weights too."""
    total = nonzero = 0
    for module in model.modules():
        weight_fn = getattr(module, "weight", None)
        if callable(weight_fn) and not isinstance(weight_fn, torch.Tensor):  # a quantized Linear
            weight = weight_fn()
            ints = weight.int_repr()
            # A quantized value equal to the zero point stands for 0.0.
            total, nonzero = total + ints.numel(), nonzero + int((ints != weight.q_zero_point()).sum())
            bias = module.bias() if callable(getattr(module, "bias", None)) else None
            if bias is not None:
                total, nonzero = total + bias.numel(), nonzero + int((bias != 0).sum())
    for p in model.parameters():
        total, nonzero = total + p.numel(), nonzero + int((p != 0).sum())
    return {"total": total, "nonzero": nonzero}


def predict(model, examples: list[dict], pad: int, batch_size: int = 32) -> list[int]:
    """Predicted label ids, batched by length (the throughput path)."""
    order = sorted(range(len(examples)), key=lambda i: len(examples[i]["input_ids"]))
    predictions = [0] * len(examples)
    with torch.inference_mode():
        for start in range(0, len(order), batch_size):
            chunk = order[start:start + batch_size]
            batch = {k: v for k, v in collate(examples, chunk, pad).items() if k != "labels"}
            for i, p in zip(chunk, model(**batch).logits.argmax(-1).tolist()):
                predictions[i] = p
    return predictions


def accuracy(model, tokenizer, rows: list[dict], *, task: str, labels: list[str], max_length: int) -> float:
    """Accuracy alone, for the many probes of a pruning search."""
    model.eval()
    examples = encode(rows, tokenizer, task, {label: i for i, label in enumerate(labels)}, max_length)
    predictions = predict(model, examples, tokenizer.pad_token_id or 0)
    return sum(p == e["labels"] for p, e in zip(predictions, examples)) / max(1, len(examples))


def measure(model, tokenizer, rows: list[dict], *, task: str, labels: list[str], max_length: int, saved_folder: str | None,
            latency_samples: int = 50, threads: int | None = None, repeats: int = 3) -> dict:
    """Every timed pass follows an untimed one over the same inputs: kernels
    built for a new sequence length (oneDNN, onnxruntime) are not counted, and
    throughput is the median of `repeats` passes, so runs compare fairly. The
    passes' min–max is reported with it: two results whose ranges overlap are
    within the noise of this machine (`faster_beyond_noise`)."""
    if threads:
        torch.set_num_threads(threads)
    model.eval()
    label_ids = {label: i for i, label in enumerate(labels)}
    examples = encode(rows, tokenizer, task, label_ids, max_length)
    pad = tokenizer.pad_token_id or 0
    with torch.inference_mode():
        singles = [{k: v for k, v in collate(examples, [n % len(examples)], pad).items() if k != "labels"}
                   for n in range(latency_samples)]
        for batch in singles:  # warm-up
            model(**batch)
        latencies = []
        for batch in singles:
            started = time.perf_counter()
            model(**batch)
            latencies.append((time.perf_counter() - started) * 1000)
        predictions = predict(model, examples, pad)  # warm-up pass, and the predictions
        passes = []
        for _ in range(max(1, repeats)):
            started = time.perf_counter()
            predict(model, examples, pad)
            passes.append(len(examples) / (time.perf_counter() - started))
        throughput = statistics.median(passes)
    latencies.sort()
    counts = model.parameter_counts if isinstance(getattr(model, "parameter_counts", None), dict) else parameter_counts(model)
    return {
        "size_bytes": folder_size(saved_folder) if saved_folder else None,
        "parameters": counts["total"], "nonzero_parameters": counts["nonzero"],
        "latency_ms_p50": round(statistics.median(latencies), 3),
        "latency_ms_p95": round(latencies[min(len(latencies) - 1, int(0.95 * len(latencies)))], 3),
        "throughput_batch32": round(throughput, 2),
        "throughput_batch32_min": round(min(passes), 2), "throughput_batch32_max": round(max(passes), 2),
        "throughput_passes": len(passes),
        **{k: round(v, 5) for k, v in classification_metrics(predictions, [e["labels"] for e in examples], len(labels)).items()},
        "eval_rows": len(examples), "threads": torch.get_num_threads(),
    }


def compare(before: dict, after: dict) -> dict:
    """Ratios after/before (size, parameters, latency) and before/after (speed),
    and the accuracy change in points."""
    def ratio(a, b):
        return round(a / b, 4) if a and b else None

    return {
        "size_ratio": ratio(after["size_bytes"], before["size_bytes"]),
        "nonzero_parameter_ratio": ratio(after["nonzero_parameters"], before["nonzero_parameters"]),
        "latency_speedup_p50": ratio(before["latency_ms_p50"], after["latency_ms_p50"]),
        "throughput_speedup": ratio(after["throughput_batch32"], before["throughput_batch32"]),
        # The speed-up's spread: the slowest pass after over the fastest before, and the other way round.
        "throughput_speedup_range": [ratio(after.get("throughput_batch32_min"), before.get("throughput_batch32_max")),
                                     ratio(after.get("throughput_batch32_max"), before.get("throughput_batch32_min"))],
        "accuracy_change_points": round(100 * (after["accuracy"] - before["accuracy"]), 3),
        "macro_f1_change_points": round(100 * (after["macro_f1"] - before["macro_f1"]), 3),
    }


def faster_beyond_noise(a: dict, b: dict) -> bool:
    """Is `a` faster than `b` in every pass — its slowest pass above `b`'s fastest?"""
    return a["throughput_batch32_min"] > b["throughput_batch32_max"]


def spread(m: dict) -> str:
    """'412.3 examples/s (398.1–420.7 over 3 passes)'."""
    return (f"{m['throughput_batch32']} examples/s ({m['throughput_batch32_min']}–{m['throughput_batch32_max']} "
            f"over {m['throughput_passes']} passes)")
