"""The Django-free training code on a tiny BERT: outputs that load and predict,
determinism, exact resume after a stop, LoRA, early stopping."""
from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from tests.tiny_model import SLICE, build_tiny_bert
from workers.finetune import run_finetune
from workers.reporting import MemoryReporter
from workers.spec import FineTuneSpec


@pytest.fixture(scope="module")
def tiny_bert(tmp_path_factory) -> Path:
    return build_tiny_bert(tmp_path_factory.mktemp("tiny-bert"))


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    folder = tmp_path_factory.mktemp("data")
    rows = list(csv.DictReader(SLICE.open(encoding="utf-8")))
    labels = sorted({r["category"] for r in rows})[:4]
    rows = [r for r in rows if r["category"] in labels]
    train, validation = folder / "train.jsonl", folder / "validation.jsonl"
    with train.open("w") as tr, validation.open("w") as va:
        for i, r in enumerate(rows):
            (va if i % 6 == 0 else tr).write(json.dumps({"text": r["text"], "label": r["category"]}) + "\n")
    return train, validation, labels


def spec_for(tmp_path, tiny_bert, data, **overrides) -> FineTuneSpec:
    train, validation, labels = data
    values = dict(task="text_classification", base_model_path=str(tiny_bert), train_file=str(train),
                  validation_file=str(validation), labels=labels, output_dir=str(tmp_path / "out"),
                  checkpoint_dir=str(tmp_path / "ckpt"), epochs=3, learning_rate=3e-3, batch_size=8,
                  checkpoint_every_steps=4, early_stopping_patience=None, torch_threads=1)
    values.update(overrides)
    return FineTuneSpec(**values)


def test_full_finetune_learns_and_exports_a_loadable_model(tmp_path, tiny_bert, data):
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    reporter = MemoryReporter()
    result = run_finetune(spec_for(tmp_path, tiny_bert, data, epochs=10), reporter)
    assert result.status == "succeeded" and result.global_step == result.total_steps
    losses = [m["eval_loss"] for m in reporter.metric_calls if "eval_loss" in m]
    assert len(losses) == 10 and min(losses[1:]) < losses[0]  # it learns
    assert any("train_loss" in m for m in reporter.metric_calls)
    assert result.best_metrics["accuracy"] > 0.4  # 4 labels: chance is 0.25
    assert {a["name"] for a in reporter.artifacts} == {"model.zip", "eval_report.json", "README.md"}
    model_dir = tmp_path / "out" / "model"
    assert (model_dir / "model.safetensors").exists() and not list(model_dir.glob("*.bin"))
    model = AutoModelForSequenceClassification.from_pretrained(model_dir, use_safetensors=True).eval()
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    assert set(model.config.id2label.values()) == set(data[2])
    with torch.no_grad():
        logits = model(**tokenizer(["I am still waiting on my card?"], return_tensors="pt")).logits
    assert logits.shape == (1, 4)
    report = json.loads((tmp_path / "out" / "eval_report.json").read_text())
    assert len(report["history"]) == 10 and report["best"]["metrics"]["accuracy"] == result.best_metrics["accuracy"]
    assert "macro_f1" in (tmp_path / "out" / "README.md").read_text()


def test_same_seed_same_result(tmp_path, tiny_bert, data):
    a = run_finetune(spec_for(tmp_path / "a", tiny_bert, data, epochs=1), MemoryReporter())
    b = run_finetune(spec_for(tmp_path / "b", tiny_bert, data, epochs=1), MemoryReporter())
    assert a.best_metrics == b.best_metrics
    wa = load_file(tmp_path / "a" / "out" / "model" / "model.safetensors")
    wb = load_file(tmp_path / "b" / "out" / "model" / "model.safetensors")
    assert all(torch.equal(wa[k], wb[k]) for k in wa)


def test_stop_then_resume_equals_an_uninterrupted_run(tmp_path, tiny_bert, data):
    straight = run_finetune(spec_for(tmp_path / "straight", tiny_bert, data, epochs=2), MemoryReporter())
    stopper = MemoryReporter(stop_after_steps=5)
    stopped = run_finetune(spec_for(tmp_path / "resumed", tiny_bert, data, epochs=2), stopper)
    assert stopped.status == "stopped" and stopped.stop_reason == "cancelled" and stopped.global_step == 5
    resumer = MemoryReporter()
    resumed = run_finetune(spec_for(tmp_path / "resumed", tiny_bert, data, epochs=2), resumer)
    assert any("Resumed from checkpoint at step 5" in message for _, message in resumer.events)
    assert resumed.global_step == straight.global_step
    assert resumed.best_metrics == straight.best_metrics
    ws = load_file(tmp_path / "straight" / "out" / "model" / "model.safetensors")
    wr = load_file(tmp_path / "resumed" / "out" / "model" / "model.safetensors")
    assert all(torch.equal(ws[k], wr[k]) for k in ws), "resume must continue exactly where the run stopped"


def test_lora_exports_adapter_and_merged_model(tmp_path, tiny_bert, data):
    from transformers import AutoModelForSequenceClassification

    reporter = MemoryReporter()
    result = run_finetune(spec_for(tmp_path, tiny_bert, data, method="lora", epochs=1, lora_r=4), reporter)
    assert result.status == "succeeded"
    assert {a["name"] for a in reporter.artifacts} >= {"adapter.zip", "model.zip"}
    assert (tmp_path / "out" / "adapter" / "adapter_model.safetensors").exists()
    merged = AutoModelForSequenceClassification.from_pretrained(tmp_path / "out" / "model", use_safetensors=True)
    assert not any("lora" in name for name, _ in merged.named_parameters())


def test_early_stopping(tmp_path, tiny_bert, data):
    reporter = MemoryReporter()
    result = run_finetune(spec_for(tmp_path, tiny_bert, data, epochs=5, learning_rate=1e-9, early_stopping_patience=1), reporter)
    assert result.status == "succeeded" and len(result.history) < 5
    assert any("Early stop" in message for _, message in reporter.events)


def test_pair_classification_with_gradient_accumulation(tmp_path, tiny_bert):
    import json as _json

    rows = [("my card is lost", "where is my card", "same"), ("my card is lost", "top up failed", "different")] * 12
    train, validation = tmp_path / "train.jsonl", tmp_path / "validation.jsonl"
    train.write_text("".join(_json.dumps({"text_a": a, "text_b": b, "label": y}) + "\n" for a, b, y in rows))
    validation.write_text("".join(_json.dumps({"text_a": a, "text_b": b, "label": y}) + "\n" for a, b, y in rows[:4]))
    spec = FineTuneSpec(task="text_pair_classification", base_model_path=str(tiny_bert), train_file=str(train),
                        validation_file=str(validation), labels=["different", "same"], output_dir=str(tmp_path / "out"),
                        checkpoint_dir=str(tmp_path / "ckpt"), epochs=2, batch_size=4, gradient_accumulation_steps=3,
                        learning_rate=3e-3, torch_threads=1, early_stopping_patience=None)
    reporter = MemoryReporter()
    result = run_finetune(spec, reporter)
    assert result.status == "succeeded"
    assert result.total_steps == 2 * 2  # 6 batches an epoch, 3 per optimizer step
    assert [p[0] for p in reporter.progress_calls] == [1, 2, 3, 4]
