"""Structured pruning, the amount search, distillation's loss and student, the
ONNX int8 export — on a small BERT, measured, never assumed."""
from __future__ import annotations

import copy

import pytest
import torch

from tests.tiny_model import build_tiny_classifier, slice_rows
from workers.compression import onnx_export, structured
from workers.compression.measure import accuracy
from workers.compression.prune import apply_pruning, search_amount
from workers.finetune import distillation_loss


@pytest.fixture(scope="module")
def small(tmp_path_factory):
    folder = tmp_path_factory.mktemp("bert-4x4")
    rows = slice_rows(96)
    labels = sorted({r["label"] for r in rows})
    tokenizer, model = build_tiny_classifier(folder, labels, layers=4, hidden=64, heads=4, intermediate=128)
    return folder, tokenizer, rows, labels, model


def _batch(tokenizer, rows):
    return tokenizer([r["text"] for r in rows[:8]], return_tensors="pt", padding=True)


def test_neuron_pruning_shrinks_the_matrices_and_reloads_identically(tmp_path, small):
    from transformers import AutoModelForSequenceClassification

    _folder, tokenizer, rows, _labels, model = small
    pruned = copy.deepcopy(model)
    details = apply_pruning(pruned, "neurons", 0.5)
    assert details["intermediate_size_after"] == 64 and pruned.config.intermediate_size == 64
    for layer in structured.encoder_layers(pruned):
        assert layer.intermediate.dense.weight.shape == (64, 64) and layer.output.dense.weight.shape == (64, 64)
    # The kept neurons are the most important of each layer.
    first = structured.encoder_layers(model)[0]
    score = first.intermediate.dense.weight.norm(dim=1) * first.output.dense.weight.norm(dim=0)
    kept = torch.topk(score, 64).indices.sort().values
    assert torch.equal(structured.encoder_layers(pruned)[0].intermediate.dense.weight, first.intermediate.dense.weight[kept])
    pruned.save_pretrained(tmp_path, safe_serialization=True)
    reloaded = AutoModelForSequenceClassification.from_pretrained(tmp_path, use_safetensors=True).eval()
    with torch.inference_mode():
        assert torch.allclose(pruned(**_batch(tokenizer, rows)).logits, reloaded(**_batch(tokenizer, rows)).logits, atol=1e-6)
    assert sum(p.numel() for p in reloaded.parameters()) < sum(p.numel() for p in model.parameters())


def test_head_pruning_zeroes_whole_heads_and_keeps_one_per_layer(small):
    _folder, _tokenizer, _rows, _labels, model = small
    pruned = copy.deepcopy(model)
    details = apply_pruning(pruned, "heads", 0.95)  # asks for more than allowed
    assert details["heads_removed"] == 16 - 4  # every layer keeps one
    size = 64 // 4
    for li, layer in enumerate(structured.encoder_layers(pruned)):
        removed = details["removed"].get(str(li), [])
        assert len(removed) == 3
        for h in range(4):
            part = slice(h * size, (h + 1) * size)
            zero = bool((layer.attention.self.value.weight[part] == 0).all()) and bool(
                (layer.attention.output.dense.weight[:, part] == 0).all())
            assert zero == (h in removed)
    assert details["sparsity"] > 0.2  # q, k, v rows and output columns of 12 of 16 heads


def test_layer_pruning_drops_the_cheapest_layers_first(small):
    _folder, tokenizer, rows, labels, model = small

    def evaluate(m):
        return accuracy(m, tokenizer, rows, task="text_classification", labels=labels, max_length=32)

    order = structured.layer_drop_order(model, evaluate, 2)
    # The first layer dropped is the one whose removal costs least, measured.
    scores = {}
    for candidate in range(4):
        trial = copy.deepcopy(model)
        structured.keep_layers(trial, [i for i in range(4) if i != candidate])
        scores[candidate] = evaluate(trial)
    assert scores[order[0]] == max(scores.values())
    pruned = copy.deepcopy(model)
    details = apply_pruning(pruned, "layers", 0.5, drop_order=order)
    assert details["layers_removed"] == sorted(order) and pruned.config.num_hidden_layers == 2
    assert len(structured.encoder_layers(pruned)) == 2


def test_search_returns_the_largest_amount_within_the_guard(small):
    _folder, tokenizer, rows, labels, model = small

    def evaluate(m):
        return accuracy(m, tokenizer, rows, task="text_classification", labels=labels, max_length=32)

    baseline = evaluate(model)
    grid = [round(0.05 * k, 2) for k in range(1, 20)]
    result = search_amount(model, "magnitude", evaluate=evaluate, baseline_accuracy=baseline, max_drop_points=2.0, grid=grid)
    curve = result["curve"]
    assert len(curve) <= 6  # bisection, not a sweep of 19
    assert [p["amount"] for p in curve] == sorted(p["amount"] for p in curve)
    for point in curve:  # every point is a real measurement at that amount
        trial = copy.deepcopy(model)
        apply_pruning(trial, "magnitude", point["amount"])
        assert round(evaluate(trial), 5) == point["accuracy"]
    passing = [p["amount"] for p in curve if p["passed"]]
    if result["chosen"] is not None:
        assert result["chosen"] == max(passing)
        assert all(p["amount"] > result["chosen"] for p in curve if not p["passed"])
    else:
        assert not passing and curve[0]["amount"] == grid[0]


def test_distillation_loss_is_cross_entropy_at_alpha_zero_and_kl_vanishes_when_student_matches():
    torch.manual_seed(1)
    student, teacher, labels = torch.randn(6, 5), torch.randn(6, 5), torch.tensor([0, 1, 2, 3, 4, 0])
    ce = torch.nn.functional.cross_entropy(student, labels)
    assert torch.allclose(distillation_loss(student, teacher, labels, temperature=2.0, alpha=0.0), ce)
    soft_only = distillation_loss(teacher.clone(), teacher, labels, temperature=3.0, alpha=1.0)
    assert abs(float(soft_only)) < 1e-6
    assert float(distillation_loss(student, teacher, labels, temperature=3.0, alpha=1.0)) > 0.01


def test_student_is_cut_from_evenly_spaced_teacher_layers(small):
    _folder, _tokenizer, _rows, _labels, model = small
    assert structured.evenly_spaced(6, 3) == [1, 3, 5] and structured.evenly_spaced(4, 2) == [1, 3]
    student = copy.deepcopy(model)
    structured.keep_layers(student, [1, 3])
    teacher_layers = structured.encoder_layers(model)
    for mine, theirs in zip(structured.encoder_layers(student), (teacher_layers[1], teacher_layers[3])):
        assert torch.equal(mine.intermediate.dense.weight, theirs.intermediate.dense.weight)
    assert torch.equal(student.classifier.weight, model.classifier.weight)


@pytest.mark.skipif(not onnx_export.available(), reason="onnxruntime not installed")
def test_onnx_int8_runs_without_torch_and_agrees_with_fp32(tmp_path, small):
    _folder, tokenizer, rows, _labels, model = small
    onnx_export.export_int8(copy.deepcopy(model), tokenizer, str(tmp_path), task="text_classification")
    session = onnx_export.OnnxClassifier(str(tmp_path))
    batch = _batch(tokenizer, rows)
    with torch.inference_mode():
        expected = model(**batch).logits
    got = session(**batch).logits
    assert got.shape == expected.shape
    # int8 weights: close, not equal; predictions mostly the same.
    assert (got.argmax(-1) == expected.argmax(-1)).float().mean() >= 0.75
    fp32_bytes = sum(p.numel() * 4 for p in model.parameters())
    encoder_linear_bytes = sum(m.weight.numel() * 4 for n, m in model.named_modules()
                               if isinstance(m, torch.nn.Linear) and "encoder" in n)
    # The encoder's Linear weights went from 4 bytes to 1; embeddings stay fp32.
    assert (tmp_path / onnx_export.ONNX_FILE).stat().st_size < fp32_bytes - 0.6 * encoder_linear_bytes
    assert session.parameter_counts["total"] > 0
