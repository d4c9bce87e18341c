"""Compression building blocks on a small BERT: the numbers in a report come
from real measurement — int8 really shrinks the Linear layers, pruned weights
really are zero, a saved int8 model loads back and predicts the same."""
from __future__ import annotations

import json

import pytest
import torch

from tests.tiny_model import build_tiny_classifier, slice_rows
from workers.compression.measure import compare, measure, parameter_counts
from workers.compression.prune import global_magnitude_prune, sparsity_of
from workers.compression.quantize import load_int8, quantize_dynamic_int8, save_int8


@pytest.fixture(scope="module")
def model_and_rows(tmp_path_factory):
    folder = tmp_path_factory.mktemp("small-bert")
    rows = slice_rows(96)
    labels = sorted({r["label"] for r in rows})
    tokenizer, model = build_tiny_classifier(folder, labels, layers=2, hidden=128, heads=2, intermediate=512)
    return folder, tokenizer, rows, labels


def linear_weight_bytes(model) -> int:
    return sum(m.weight.numel() * m.weight.element_size() for m in model.modules() if isinstance(m, torch.nn.Linear))


def test_int8_shrinks_linear_layers_and_reloads_exactly(tmp_path, model_and_rows):
    from transformers import BertForSequenceClassification

    folder, tokenizer, rows, labels = model_and_rows
    fp32 = BertForSequenceClassification.from_pretrained(folder, use_safetensors=True).eval()
    before = measure(fp32, tokenizer, rows, task="text_classification", labels=labels, max_length=32, saved_folder=str(folder),
                     latency_samples=10)
    int8 = quantize_dynamic_int8(BertForSequenceClassification.from_pretrained(folder, use_safetensors=True))
    assert not any(isinstance(m, torch.nn.Linear) and not hasattr(m, "_packed_params") for m in int8.modules()
                   if type(m) is torch.nn.Linear)
    saved = save_int8(int8, tokenizer, str(tmp_path / "int8"))
    assert not list((tmp_path / "int8").glob("*.bin")) and not list((tmp_path / "int8").glob("*.pt"))
    after = measure(int8, tokenizer, rows, task="text_classification", labels=labels, max_length=32, saved_folder=saved,
                    latency_samples=10)
    # Linear weights go from 4 bytes to 1: the saved model is much smaller.
    linear_bytes = linear_weight_bytes(fp32)
    assert after["size_bytes"] < before["size_bytes"] - 0.6 * linear_bytes
    assert after["parameters"] == before["parameters"]  # same weights, fewer bytes each
    ratios = compare(before, after)
    assert ratios["size_ratio"] < 0.7 and ratios["throughput_speedup"] > 0
    reloaded = load_int8(saved)
    batch = tokenizer([r["text"] for r in rows[:8]], return_tensors="pt", padding=True)
    with torch.inference_mode():
        assert torch.equal(int8(**batch).logits, reloaded(**batch).logits)
    assert json.loads((tmp_path / "int8" / "quantization.json").read_text())["method"] == "dynamic_int8"


def test_global_magnitude_pruning_zeroes_the_smallest_weights(model_and_rows):
    from transformers import BertForSequenceClassification

    folder, tokenizer, rows, labels = model_and_rows
    model = BertForSequenceClassification.from_pretrained(folder, use_safetensors=True).eval()
    weights_before = torch.cat([m.weight.detach().abs().flatten() for n, m in model.named_modules()
                                if isinstance(m, torch.nn.Linear) and "classifier" not in n])
    threshold = weights_before.kthvalue(int(0.5 * weights_before.numel())).values
    stats = global_magnitude_prune(model, 0.5)
    assert abs(stats["sparsity"] - 0.5) < 0.01
    assert sparsity_of(model) == stats
    for name, module in model.named_modules():
        if isinstance(module, torch.nn.Linear) and "classifier" not in name:
            kept = module.weight[module.weight != 0].abs()
            assert kept.numel() == 0 or kept.min() >= threshold * 0.999  # only small weights were removed
    counts = parameter_counts(model)
    assert counts["nonzero"] < counts["total"] - 0.45 * weights_before.numel()
    assert not any("weight_orig" in k or "weight_mask" in k for k in model.state_dict())  # pruning is baked in


def test_measurement_reports_every_field(model_and_rows):
    from transformers import BertForSequenceClassification

    folder, tokenizer, rows, labels = model_and_rows
    model = BertForSequenceClassification.from_pretrained(folder, use_safetensors=True)
    report = measure(model, tokenizer, rows, task="text_classification", labels=labels, max_length=32,
                     saved_folder=str(folder), latency_samples=20)
    assert report["eval_rows"] == len(rows) and 0 <= report["accuracy"] <= 1
    assert 0 < report["latency_ms_p50"] <= report["latency_ms_p95"]
    assert report["throughput_batch32"] > 0 and report["size_bytes"] > report["parameters"] * 3


def test_quantize_run_reports_and_applies_the_guard(tmp_path, model_and_rows):
    from workers.compression.run import CompressionSpec, run_compression
    from workers.reporting import MemoryReporter

    folder, _tokenizer, rows, _labels = model_and_rows
    eval_file = tmp_path / "eval.jsonl"
    eval_file.write_text("".join(json.dumps(r) + "\n" for r in rows))

    def run(max_drop, out):
        reporter = MemoryReporter()
        spec = CompressionSpec(kind="quantize", source_model_dir=str(folder), eval_file=str(eval_file), output_dir=str(tmp_path / out),
                            task="text_classification", max_accuracy_drop=max_drop, max_length=32, latency_samples=5)
        return run_compression(spec, reporter), reporter

    report, reporter = run(100.0, "loose")
    assert report["guard"]["passed"] and report["after"]["size_bytes"] < report["before"]["size_bytes"]
    assert {a["name"] for a in reporter.artifacts} == {"model.zip", "model-onnx-int8.zip", "compression_report.json", "README.md"}
    assert "Accuracy guard" in (tmp_path / "loose" / "README.md").read_text()
    # A guard that cannot be met (it demands 50 points of improvement) fails, with the numbers.
    impossible, _ = run(-50.0, "strict")
    assert impossible["guard"]["passed"] is False
    assert impossible["guard"]["accuracy_drop_points"] > -50.0


def test_prune_run_reports_real_sparsity(tmp_path, model_and_rows):
    from workers.compression.run import CompressionSpec, run_compression
    from workers.reporting import MemoryReporter

    folder, _tokenizer, rows, _labels = model_and_rows
    eval_file = tmp_path / "eval.jsonl"
    eval_file.write_text("".join(json.dumps(r) + "\n" for r in rows))
    spec = CompressionSpec(kind="prune", sparsity=0.4, source_model_dir=str(folder), eval_file=str(eval_file),
                           output_dir=str(tmp_path / "out"), task="text_classification", max_accuracy_drop=100.0,
                           max_length=32, latency_samples=5)
    report = run_compression(spec, MemoryReporter())
    assert abs(report["pruning"]["sparsity"] - 0.4) < 0.01
    assert report["after"]["nonzero_parameters"] < report["before"]["nonzero_parameters"]
    assert 0.55 < report["ratios"]["nonzero_parameter_ratio"] < 0.8  # embeddings and norms are not pruned
    from transformers import AutoModelForSequenceClassification

    reloaded = AutoModelForSequenceClassification.from_pretrained(tmp_path / "out" / "model", use_safetensors=True)
    zeros = sum(int((m.weight == 0).sum()) for n, m in reloaded.named_modules()
                if isinstance(m, torch.nn.Linear) and "classifier" not in n)
    assert zeros == report["pruning"]["zero_weights"]  # the zeros survive saving


def test_a_recovery_fine_tune_never_refits_on_the_evaluation_data(tmp_path, model_and_rows):
    """The platform's 'auto' turns refit on for carved validation splits; inside a
    compression the validation split is what the result is judged on, so a
    training phase never trains on it."""
    from workers.compression.run import CompressionSpec, run_compression
    from workers.reporting import MemoryReporter

    folder, _tokenizer, rows, _labels = model_and_rows
    eval_file, train_file = tmp_path / "eval.jsonl", tmp_path / "train.jsonl"
    eval_file.write_text("".join(json.dumps(r) + "\n" for r in rows[:24]))
    train_file.write_text("".join(json.dumps(r) + "\n" for r in rows[24:]))
    spec = CompressionSpec(kind="prune", sparsity=0.3, recovery_epochs=1, source_model_dir=str(folder),
                           eval_file=str(eval_file), train_file=str(train_file), output_dir=str(tmp_path / "out"),
                           checkpoint_dir=str(tmp_path / "ckpt"), task="text_classification", max_accuracy_drop=100.0,
                           max_length=32, latency_samples=5,
                           training={"refit": True, "batch_size": 8, "learning_rate": 1e-3})
    reporter = MemoryReporter()
    run_compression(spec, reporter)
    assert not any("Refit" in message for _, message in reporter.events)
    (report,) = [json.loads(p.read_text()) for p in (tmp_path / "out").rglob("eval_report.json")]
    assert report["refit"] is None and report["data"]["train_rows"] == len(rows) - 24


def test_a_compression_of_a_refit_source_measures_its_held_out_rows_and_chooses_nothing_by_validation(
        tmp_path, model_and_rows, monkeypatch):
    """The split of a refit source (staging.guard_rows_of_derived): the guard and the report measure the held-out
    rows (eval_file). The validation split, which the source trained on, chooses nothing: the recovery runs every
    epoch (no early stopping) and its last epoch is delivered, never swapped for the one-shot model; only the
    pruning search probes it."""
    from workers.compression import run as compression_run
    from workers.compression.run import CompressionSpec, run_compression
    from workers.reporting import MemoryReporter

    folder, _tokenizer, rows, _labels = model_and_rows
    files = {name: tmp_path / f"{name}.jsonl" for name in ("held_out", "validation", "train")}
    parts = {"held_out": rows[:17], "validation": rows[17:41], "train": rows[41:]}
    for name, path in files.items():
        path.write_text("".join(json.dumps(r) + "\n" for r in parts[name]))
    spec = CompressionSpec(kind="prune", sparsity=None, recovery_epochs=3, source_model_dir=str(folder),
                           eval_file=str(files["held_out"]), validation_seen_by_source=str(files["validation"]),
                           measured_on="the 10% test split of job 7, rows it never trained on",
                           train_file=str(files["train"]),
                           output_dir=str(tmp_path / "out"), checkpoint_dir=str(tmp_path / "ckpt"),
                           task="text_classification", max_accuracy_drop=100.0, max_length=32, latency_samples=5,
                           # a rate that wrecks the model: early stopping and the one-shot contest would both act
                           training={"batch_size": 8, "learning_rate": 0.5, "early_stopping_patience": 1})
    scored, real_accuracy = [], compression_run.accuracy

    def counting_accuracy(model, tokenizer, rows, **kwargs):  # the real scoring, its rows counted
        scored.append(len(rows))
        return real_accuracy(model, tokenizer, rows, **kwargs)

    monkeypatch.setattr(compression_run, "accuracy", counting_accuracy)
    report = run_compression(spec, MemoryReporter())
    assert report["measured_on"] == {"rows": 17, "what": "the 10% test split of job 7, rows it never trained on"}
    assert report["before"]["eval_rows"] == report["after"]["eval_rows"] == 17
    (phase,) = [json.loads(p.read_text()) for p in (tmp_path / "out").rglob("eval_report.json")]
    assert phase["data"] == {"train_rows": len(rows) - 41, "validation_rows": 24, "test_rows": 0}
    assert [h["epoch"] for h in phase["history"]] == [1, 2, 3] and phase["best"]["epoch"] == 3  # every epoch, the last kept
    assert report["recovery"]["delivered"] == "recovered"
    # The search's probes and the recovery's score are on the 24 validation rows, never the 17 held out.
    assert report["search"]["curve"] and len(scored) >= len(report["search"]["curve"]) + 1
    assert set(scored) == {24}
    assert "test split of job 7" in (tmp_path / "out" / "README.md").read_text()
