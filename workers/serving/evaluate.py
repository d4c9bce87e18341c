"""The comparison (an `evaluate` job), free of Django: several models scored one after the other on every
row of one labelled dataset version, on the same worker and settings, then ranked.

For each model (each loaded by `runtime.load_model`, so fp32, int8 PyTorch, int8 ONNX and chat models go
through the same calls callers use):

- quality on every row: accuracy and macro-F1 for classifiers, exact match and token F1 of the greedy
  reply to the last assistant turn for chat models (serving/metrics.py: the fine-tunes' own scoring);
- latency p50/p95 at batch 1: `latency_samples` single-input calls, each input seen once untimed first
  (kernels built for a new sequence length are not counted: compression/measure.py's rule);
- throughput at batch 32: predictions per second over every row, the median of `repeats` timed passes
  after an untimed one (its predictions are the ones scored); chat models' greedy replies are generated
  32 at a time as well (LoadedModel.reply, left-padded), over one timed pass (the scored one);
- size on disk of the unpacked model.

`leaderboard(...)` turns the measurements into the ranked table: cost per 1M predictions at a per-second
rate (the platform passes its plan's rate for the device class the job ran on), and the cheapest model
within `accuracy_tolerance` points of the best one marked `recommended`."""
from __future__ import annotations

import math
import statistics
import time
from dataclasses import dataclass, field

from ..data import read_jsonl
from ..reporting import Reporter
from .metrics import classification_report, generation_report

BATCH_SIZE = 32


@dataclass
class EvaluateSpec:
    models: list[dict]  # {"key", "name", "folder"} each, in the order asked
    data_file: str  # every row of the dataset version (normalized JSONL)
    task: str  # text_classification | text_pair_classification | chat
    labels: list[str] = field(default_factory=list)  # the dataset's labels (classifiers)
    accuracy_tolerance: float = 1.0  # points
    latency_samples: int = 50
    max_new_tokens: int = 64
    repeats: int = 3
    threads: int | None = None


class Stopped(Exception):
    def __init__(self, reason: str):
        super().__init__(reason)
        self.reason = reason


def _percentile(sorted_values: list[float], share: float) -> float:
    """The nearest-rank value below which `share` of the values lie (measure.py's p95)."""
    return sorted_values[min(len(sorted_values) - 1, int(share * len(sorted_values)))]


def _timed(fn) -> float:
    started = time.perf_counter()
    fn()
    return time.perf_counter() - started


def _prompts(rows: list[dict]) -> list[dict]:
    """Chat rows as {"prompt": the turns before the last assistant message, "reference": that message}."""
    out = []
    for row in rows:
        messages = row.get("messages") or []
        assistants = [i for i, m in enumerate(messages) if m.get("role") == "assistant"]
        if assistants and assistants[-1] > 0:
            out.append({"prompt": messages[:assistants[-1]], "reference": messages[assistants[-1]]["content"]})
    return out


def _classifier_inputs(rows: list[dict], task: str) -> list[dict]:
    if task == "text_pair_classification":
        return [{"text_a": r["text_a"], "text_b": r["text_b"]} for r in rows]
    return [{"text": r["text"]} for r in rows]


def score_classifier(loaded, rows: list[dict], *, task: str, labels: list[str], latency_samples: int,
                     repeats: int, should_stop) -> dict:
    inputs = _classifier_inputs(rows, task)
    singles = [inputs[n % len(inputs)] for n in range(latency_samples)]
    for single in singles:  # warm-up: every input once, untimed
        loaded.classify([single], batch_size=1)
    latencies = sorted(1000 * _timed(lambda s=single: loaded.classify([s], batch_size=1)) for single in singles)
    if (reason := should_stop()):
        raise Stopped(reason)
    predictions = loaded.classify(inputs, batch_size=BATCH_SIZE)  # the untimed pass, and the answers scored
    passes = []
    for _ in range(max(1, repeats)):
        passes.append(len(inputs) / _timed(lambda: loaded.classify(inputs, batch_size=BATCH_SIZE)))
        if (reason := should_stop()):
            raise Stopped(reason)
    # Over the dataset's labels and then any the model has besides (a wrong guess is wrong either way).
    names = list(labels) + [label for label in loaded.labels if label not in labels]
    quality = classification_report([p.label for p in predictions], [r["label"] for r in rows], names)
    return {"accuracy": quality["accuracy"], "macro_f1": quality["macro_f1"], "latencies": latencies,
            "passes": passes, "predictions": [p.label for p in predictions]}


def score_chat(loaded, rows: list[dict], *, latency_samples: int, max_new_tokens: int, should_stop) -> dict:
    prompts = _prompts(rows)
    if not prompts:
        raise ValueError("The dataset has no conversation ending on an assistant reply to compare against.")
    conversations = [p["prompt"] for p in prompts]
    singles = [conversations[n % len(conversations)] for n in range(latency_samples)]
    for single in singles:
        loaded.reply([single], max_new_tokens=max_new_tokens)
    latencies = sorted(1000 * _timed(lambda s=single: loaded.reply([s], max_new_tokens=max_new_tokens))
                       for single in singles)
    if (reason := should_stop()):
        raise Stopped(reason)
    # Generation over every row is the long part: one pass, timed, is both the answers and the throughput.
    started = time.perf_counter()
    replies = [r.content for r in loaded.reply(conversations, max_new_tokens=max_new_tokens, batch_size=BATCH_SIZE)]
    passes = [len(conversations) / (time.perf_counter() - started)]
    quality = generation_report(replies, [p["reference"] for p in prompts])
    return {"exact_match": quality["exact_match"], "token_f1": quality["token_f1"], "latencies": latencies,
            "passes": passes, "predictions": replies}


def measure_model(model: dict, rows: list[dict], spec: EvaluateSpec, *, should_stop) -> dict:
    """One model's row of measurements (no cost: that is the platform's rate)."""
    from .runtime import CHAT, load_model

    loaded = load_model(model["folder"], threads=spec.threads)
    if loaded.kind == CHAT:
        scored = score_chat(loaded, rows, latency_samples=spec.latency_samples, max_new_tokens=spec.max_new_tokens,
                            should_stop=should_stop)
        quality = {"exact_match": round(scored["exact_match"], 5), "token_f1": round(scored["token_f1"], 5)}
        metric = "exact_match"
    else:
        scored = score_classifier(loaded, rows, task=spec.task, labels=spec.labels,
                                  latency_samples=spec.latency_samples, repeats=spec.repeats, should_stop=should_stop)
        quality = {"accuracy": round(scored["accuracy"], 5), "macro_f1": round(scored["macro_f1"], 5)}
        metric = "accuracy"
    latencies, passes = scored["latencies"], scored["passes"]
    return {
        "key": model["key"], "name": model.get("name") or model["key"], "family": loaded.kind,
        "variant": loaded.variant, **quality, "metric": metric,
        "latency_ms_p50": round(statistics.median(latencies), 3), "latency_ms_p95": round(_percentile(latencies, 0.95), 3),
        "throughput_batch32": round(statistics.median(passes), 3),
        "throughput_batch32_min": round(min(passes), 3), "throughput_batch32_max": round(max(passes), 3),
        "throughput_passes": len(passes), "size_bytes": loaded.size_bytes, "load_seconds": round(loaded.load_seconds, 3),
        "rows": len(rows) if loaded.kind != CHAT else len(scored["predictions"]),
    }


def run_evaluate(spec: EvaluateSpec, reporter: Reporter) -> dict:
    """Every model measured in turn, progress reported per model. Returns {"models": [measurements], ...}
    or {"stopped": reason} when should_stop said so (a cancel, a budget, a lost lease)."""
    import torch

    from ..devices import device_class

    if spec.threads:
        torch.set_num_threads(spec.threads)
    rows = read_jsonl(spec.data_file)
    if not rows:
        raise ValueError("The dataset version has no rows to score.")
    device, devices = device_class()
    total = len(spec.models)
    measured = []
    reporter.progress(step=0, total_steps=total, epoch=0.0)
    for index, model in enumerate(spec.models):
        if (reason := reporter.should_stop()):
            return {"stopped": reason, "models": measured}
        reporter.event(level="info", message=f"Model {index + 1} of {total}: {model.get('name') or model['key']}: "
                                             f"scoring {len(rows)} rows.")
        try:
            row = measure_model(model, rows, spec, should_stop=reporter.should_stop)
        except Stopped as stop:
            return {"stopped": stop.reason, "models": measured}
        measured.append(row)
        quality = (f"accuracy {100 * row['accuracy']:.2f} %" if row["metric"] == "accuracy"
                   else f"exact match {100 * row['exact_match']:.2f} %")
        reporter.event(level="info", message=(
            f"Model {index + 1} of {total}: {row['name']} ({row['variant']}): {quality}, latency p50 "
            f"{row['latency_ms_p50']} ms / p95 {row['latency_ms_p95']} ms at batch 1, {row['throughput_batch32']} "
            f"predictions/s at batch {BATCH_SIZE}, {row['size_bytes']:,} bytes."))
        reporter.progress(step=index + 1, total_steps=total, epoch=0.0)
    return {"models": measured, "device_class": device, "device_count": devices, "threads": torch.get_num_threads(),
            "dataset_rows": len(rows), "batch_size": BATCH_SIZE, "latency_samples": spec.latency_samples,
            "repeats": max(1, spec.repeats), "accuracy_tolerance": spec.accuracy_tolerance}


# --- the leaderboard -------------------------------------------------------------------------------------

def cost_per_million(*, throughput: float, usd_per_second: float, device_count: int = 1) -> float | None:
    """USD for 1M predictions at `throughput` predictions a second: 1e6 / throughput seconds of the
    device class, at its per-second rate, times the devices the worker held."""
    if not throughput or throughput <= 0 or not math.isfinite(throughput):
        return None
    return 1e6 / throughput * float(usd_per_second) * device_count


def leaderboard(models: list[dict], *, accuracy_tolerance: float, usd_per_second, device_count: int = 1) -> list[dict]:
    """The rows in the order measured, each with `cost_per_1m_usd`, `points_behind_best` (the quality metric's
    gap to the best model, in points) and `recommended`: exactly one row, the cheapest (ties: the more
    accurate, then the smaller) of those within `accuracy_tolerance` points of the best."""
    if not models:
        return []
    metric = models[0]["metric"]
    best = max(m[metric] for m in models)
    rows = []
    for m in models:
        cost = cost_per_million(throughput=m["throughput_batch32"], usd_per_second=usd_per_second,
                                device_count=device_count)
        behind = round(100 * (best - m[metric]), 5)
        rows.append({**m, "cost_per_1m_usd": float(f"{cost:.8g}") if cost is not None else None,
                     "points_behind_best": behind, "within_tolerance": behind <= accuracy_tolerance + 1e-9,
                     "recommended": False})
    eligible = [r for r in rows if r["within_tolerance"] and r["cost_per_1m_usd"] is not None]
    if eligible:
        # With a zero rate every cost is 0: the faster model is still the cheaper one in device time.
        chosen = min(eligible, key=lambda r: (r["cost_per_1m_usd"], -r["throughput_batch32"], -r[metric],
                                              r["size_bytes"]))
        chosen["recommended"] = True
    return rows
