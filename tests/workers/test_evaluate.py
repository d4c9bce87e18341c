"""workers/serving/evaluate: the comparison's numbers against an independent computation (each model run
directly, one row at a time), the leaderboard's rule, progress per model and stops honoured."""
from __future__ import annotations

import json

import pytest
import torch

from tests.tiny_model import build_tiny_classifier, build_tiny_llama, chat_rows, slice_rows
from workers.reporting import MemoryReporter
from workers.serving.evaluate import EvaluateSpec, cost_per_million, leaderboard, run_evaluate

ROWS = slice_rows(40)
LABELS = sorted({r["label"] for r in ROWS})


def direct_accuracy(model, tokenizer, rows, labels) -> tuple[float, list[str]]:
    """Each row alone through the model (no batching, no padding): the labels it picks."""
    picked = []
    with torch.inference_mode():
        for row in rows:
            batch = tokenizer([row["text"]], truncation=True, max_length=64, return_tensors="pt")
            picked.append(labels[int(model(**batch).logits[0].argmax())])
    return sum(p == r["label"] for p, r in zip(picked, rows)) / len(rows), picked


@pytest.fixture(scope="module")
def two_models(tmp_path_factory):
    from workers.compression.quantize import quantize_dynamic_int8, save_int8

    base = tmp_path_factory.mktemp("fp32")
    tokenizer, model = build_tiny_classifier(base, LABELS)
    with torch.no_grad():  # a model that is not uniform: the accuracy has something to be right about
        torch.manual_seed(3)
        for p in model.parameters():
            p.add_(torch.randn_like(p) * 0.5)
    model.save_pretrained(base, safe_serialization=True)
    int8_folder = tmp_path_factory.mktemp("int8")
    quantized = quantize_dynamic_int8(model)
    save_int8(quantized, tokenizer, str(int8_folder))
    return {"fp32": (base, model), "int8": (int8_folder, quantized), "tokenizer": tokenizer}


def write_rows(path, rows):
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return str(path)


def test_every_model_scored_on_every_row_as_the_model_itself_would(two_models, tmp_path):
    tokenizer = two_models["tokenizer"]
    spec = EvaluateSpec(models=[{"key": "fp32", "name": "base", "folder": str(two_models["fp32"][0])},
                                {"key": "int8", "name": "int8", "folder": str(two_models["int8"][0])}],
                        data_file=write_rows(tmp_path / "rows.jsonl", ROWS), task="text_classification",
                        labels=LABELS, latency_samples=5, repeats=2, threads=1)
    reporter = MemoryReporter()
    report = run_evaluate(spec, reporter)
    assert [m["key"] for m in report["models"]] == ["fp32", "int8"]
    assert report["dataset_rows"] == len(ROWS) and report["device_class"] == "cpu" and report["device_count"] == 1
    for measured, (_folder, model) in zip(report["models"], [two_models["fp32"], two_models["int8"]]):
        expected, _picked = direct_accuracy(model, tokenizer, ROWS, LABELS)
        assert measured["accuracy"] == pytest.approx(expected, abs=1e-5)
        assert 0 < measured["latency_ms_p50"] <= measured["latency_ms_p95"]
        assert measured["throughput_batch32_min"] <= measured["throughput_batch32"] <= measured["throughput_batch32_max"]
        assert measured["throughput_passes"] == 2 and measured["rows"] == len(ROWS)
        assert measured["size_bytes"] == sum(f.stat().st_size for f in _folder.rglob("*") if f.is_file())
    assert [m["variant"] for m in report["models"]] == ["fp32", "torch_int8"]
    assert report["models"][1]["size_bytes"] < report["models"][0]["size_bytes"]
    # Progress per model, and one event each with its numbers.
    assert reporter.progress_calls == [(0, 2, 0.0), (1, 2, 0.0), (2, 2, 0.0)]
    assert sum("predictions/s" in message for _level, message in reporter.events) == 2


class StopAfter(MemoryReporter):
    """Says 'cancelled' from the n-th should_stop call on."""

    def __init__(self, calls: int):
        super().__init__()
        self.calls, self.seen = calls, 0

    def should_stop(self):
        self.seen += 1
        return "cancelled" if self.seen > self.calls else None


def test_a_stop_is_honoured_between_and_within_models(two_models, tmp_path):
    models = [{"key": k, "folder": str(two_models[k][0])} for k in ("fp32", "int8")]
    spec = EvaluateSpec(models=models, data_file=write_rows(tmp_path / "rows.jsonl", ROWS), task="text_classification",
                        labels=LABELS, latency_samples=5, repeats=1, threads=1)
    assert run_evaluate(spec, StopAfter(0)) == {"stopped": "cancelled", "models": []}
    # The first model's checks (before it, after latency, after a pass) pass; the second stops inside.
    stopped = run_evaluate(spec, StopAfter(4))
    assert stopped["stopped"] == "cancelled" and [m["key"] for m in stopped["models"]] == ["fp32"]


def test_chat_models_are_scored_by_exact_match(tmp_path):
    folder = build_tiny_llama(tmp_path / "llama")
    rows = chat_rows()[:4]
    spec = EvaluateSpec(models=[{"key": "chat", "folder": str(folder)}], data_file=write_rows(tmp_path / "c.jsonl", rows),
                        task="chat", latency_samples=5, max_new_tokens=4, threads=1)
    report = run_evaluate(spec, MemoryReporter())
    measured = report["models"][0]
    assert measured["metric"] == "exact_match" and measured["family"] == "chat" and measured["rows"] == 4
    # Independently: the untrained model's greedy replies against the references.
    from workers.chat.evaluation import exact_match, token_f1
    from workers.serving.runtime import load_model

    loaded = load_model(str(folder))
    replies = [r.content for r in loaded.reply([r["messages"][:-1] for r in rows], max_new_tokens=4)]
    references = [r["messages"][-1]["content"] for r in rows]
    assert measured["exact_match"] == pytest.approx(sum(map(exact_match, replies, references)) / 4, abs=1e-5)
    assert measured["token_f1"] == pytest.approx(sum(map(token_f1, replies, references)) / 4, abs=1e-5)


def row(key, accuracy, throughput, size=100):
    return {"key": key, "metric": "accuracy", "accuracy": accuracy, "throughput_batch32": throughput, "size_bytes": size}


@pytest.mark.parametrize("models, tolerance, recommended", [
    # The best is the cheapest: it is recommended.
    ([row("a", 0.90, 500), row("b", 0.80, 400)], 1.0, "a"),
    # 0.5 points behind and 4× cheaper: within 1 point.
    ([row("a", 0.90, 100), row("b", 0.895, 400)], 1.0, "b"),
    # Exactly at the tolerance counts; just beyond it does not.
    ([row("a", 0.90, 100), row("b", 0.89, 400)], 1.0, "b"),
    ([row("a", 0.90, 100), row("b", 0.8899, 400)], 1.0, "a"),
    # Tolerance 0: only the best; equal best: the cheaper of them.
    ([row("a", 0.90, 100), row("b", 0.90, 300), row("c", 0.5, 900)], 0.0, "b"),
    # Equal cost: the more accurate, then the smaller.
    ([row("a", 0.90, 300, 50), row("b", 0.91, 300, 80)], 5.0, "b"),
    ([row("a", 0.90, 300, 50), row("b", 0.90, 300, 80)], 5.0, "a"),
])
def test_recommended_is_the_cheapest_within_the_tolerance(models, tolerance, recommended):
    rows = leaderboard(models, accuracy_tolerance=tolerance, usd_per_second="0.0004", device_count=2)
    assert [r["key"] for r in rows if r["recommended"]] == [recommended]
    for r, m in zip(rows, models):  # cost recomputed here: 1e6 predictions / throughput s × rate × devices
        assert r["cost_per_1m_usd"] == pytest.approx(1e6 / m["throughput_batch32"] * 0.0004 * 2, rel=1e-6)
        assert r["points_behind_best"] == pytest.approx(100 * (max(x["accuracy"] for x in models) - m["accuracy"]))


def test_cost_without_throughput_is_unknown_and_a_free_rate_still_recommends_the_fastest():
    assert cost_per_million(throughput=0, usd_per_second=1) is None
    rows = leaderboard([row("a", 0.9, 100), row("b", 0.9, 200)], accuracy_tolerance=1, usd_per_second=0)
    assert [r["cost_per_1m_usd"] for r in rows] == [0, 0] and [r["recommended"] for r in rows] == [False, True]
    assert leaderboard([], accuracy_tolerance=1, usd_per_second=1) == []
