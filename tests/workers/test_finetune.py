"""The Django-free training code on a tiny BERT: outputs that load and predict,
determinism, exact resume after a stop, LoRA, early stopping; a test file scored
once with the final model, refit on train + validation (resumable), weight
averaging, layer-wise learning-rate decay, frozen embeddings, schedules."""
from __future__ import annotations

import csv
import json
import math
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
    assert all(m["examples_per_second"] > 0 for m in reporter.metric_calls if "train_loss" in m)  # shown live
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


def test_lora_trains_the_pooler_with_the_classifier_and_ships_both(tmp_path, tiny_bert, data):
    from transformers import AutoModelForSequenceClassification

    run_finetune(spec_for(tmp_path, tiny_bert, data, method="lora", epochs=1, lora_r=4,
                          lora_targets=["query", "value", "dense"]), MemoryReporter())
    adapter = load_file(tmp_path / "out" / "adapter" / "adapter_model.safetensors")
    assert any("pooler" in k for k in adapter) and any("classifier" in k for k in adapter)
    assert not any("pooler" in k and "lora_" in k for k in adapter)  # trained in full, not adapted
    merged = AutoModelForSequenceClassification.from_pretrained(tmp_path / "out" / "model", use_safetensors=True)
    base = load_file(Path(tiny_bert) / "model.safetensors")
    pooler = [k for k in base if k.endswith("pooler.dense.weight")][0]
    assert not torch.equal(merged.bert.pooler.dense.weight, base[pooler])
    # The old behaviour on request: the classifier alone.
    run_finetune(spec_for(tmp_path / "head-only", tiny_bert, data, method="lora", epochs=1, lora_r=4, lora_head_modules=[]),
                 MemoryReporter())
    assert not any("pooler" in k for k in load_file(tmp_path / "head-only" / "out" / "adapter" / "adapter_model.safetensors"))


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


# --- issue 14: an honest test score, refit, and the training options ---------------------------

@pytest.fixture(scope="module")
def test_split(tmp_path_factory, data):
    """Rows of the same labels the run never trains or selects on."""
    rows = list(csv.DictReader(SLICE.open(encoding="utf-8")))
    path = tmp_path_factory.mktemp("test-split") / "test.jsonl"
    kept = [r for r in rows if r["category"] in data[2]][::3]
    path.write_text("".join(json.dumps({"text": r["text"] + " please", "label": r["category"]}) + "\n" for r in kept))
    return path, len(kept)


def test_a_test_file_is_scored_once_with_the_final_model_and_reported_apart(tmp_path, tiny_bert, data, test_split):
    path, rows = test_split
    reporter = MemoryReporter()
    result = run_finetune(spec_for(tmp_path, tiny_bert, data, epochs=2, test_file=str(path)), reporter)
    assert set(result.test_metrics) == {"accuracy", "macro_f1", "eval_loss", "rows"} and result.test_metrics["rows"] == rows
    # Never part of the per-epoch evaluations nor of the choice of the best epoch.
    assert all(not any(k.startswith("test") for k in m) for m in reporter.metric_calls)
    assert [m for _, m in reporter.events if m.startswith("Test split")] == [
        f"Test split ({rows} rows, never used for training or selection): accuracy {result.test_metrics['accuracy']:.4f}, "
        f"macro-F1 {result.test_metrics['macro_f1']:.4f}."]
    report = json.loads((tmp_path / "out" / "eval_report.json").read_text())
    assert report["test"] == result.test_metrics and report["selection"]["split"] == "validation"
    assert report["data"]["test_rows"] == rows
    # The delivered model scores the same on the test file when loaded from the download.
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    model = AutoModelForSequenceClassification.from_pretrained(tmp_path / "out" / "model").eval()
    tokenizer = AutoTokenizer.from_pretrained(tmp_path / "out" / "model")
    lines = [json.loads(line) for line in path.read_text().splitlines()]
    with torch.no_grad():
        logits = model(**tokenizer([r["text"] for r in lines], padding=True, return_tensors="pt")).logits
    hits = sum(model.config.id2label[int(i)] == r["label"] for i, r in zip(logits.argmax(-1), lines))
    assert hits / rows == pytest.approx(result.test_metrics["accuracy"])
    card = (tmp_path / "out" / "README.md").read_text()
    assert "selection split" in card and f"Test split ({rows} rows" in card
    # Without a test file nothing claims a test score.
    plain = run_finetune(spec_for(tmp_path / "plain", tiny_bert, data, epochs=1), MemoryReporter())
    assert plain.test_metrics is None and "Test split" not in (tmp_path / "plain" / "out" / "README.md").read_text()


def test_refit_trains_a_fresh_model_on_train_and_validation_for_the_chosen_epochs(tmp_path, tiny_bert, data, test_split):
    train, validation, _ = data
    n_train, n_validation = (len(p.read_text().splitlines()) for p in (train, validation))
    selection_only = run_finetune(spec_for(tmp_path / "select", tiny_bert, data, epochs=3), MemoryReporter())
    reporter = MemoryReporter()
    result = run_finetune(spec_for(tmp_path / "refit", tiny_bert, data, epochs=3, refit=True,
                                   test_file=str(test_split[0])), reporter)
    best = max(selection_only.history, key=lambda h: h["accuracy"])  # the first of equals, as selection keeps it
    best_epoch = best["epoch"]
    assert result.refit == {"epochs": best_epoch, "train_rows": n_train + n_validation, "selection_best_step": best["step"]}
    assert result.history == selection_only.history  # the selection run is the same run
    per_epoch = -(-n_train // 8), -(-(n_train + n_validation) // 8)
    assert result.global_step == result.total_steps == 3 * per_epoch[0] + best_epoch * per_epoch[1]
    steps = [p[0] for p in reporter.progress_calls]
    assert steps == list(range(1, result.global_step + 1))  # one count, forward only, across both phases
    assert any(m.startswith("Refit: a fresh model on train + validation") for _, m in reporter.events)
    # The end of selection is a resume point the platform hears of (billing excludes only work after it).
    assert [c["step"] for c in reporter.checkpoints if c["path"].endswith("selection.json") and not c["is_best"]] == [
        3 * per_epoch[0]]
    assert any("refit_train_loss" in m for m in reporter.metric_calls)
    refit_weights = load_file(tmp_path / "refit" / "out" / "model" / "model.safetensors")
    selected = load_file(tmp_path / "select" / "out" / "model" / "model.safetensors")
    assert not all(torch.equal(refit_weights[k], selected[k]) for k in selected)  # another model is delivered
    report = json.loads((tmp_path / "refit" / "out" / "eval_report.json").read_text())
    assert report["refit"] == result.refit and report["test"] == result.test_metrics
    assert "before the refit" in (tmp_path / "refit" / "out" / "README.md").read_text()


def test_a_run_stopped_during_its_refit_resumes_exactly(tmp_path, tiny_bert, data):
    straight = run_finetune(spec_for(tmp_path / "straight", tiny_bert, data, epochs=2, refit=True,
                                     average_last_epochs=2), MemoryReporter())
    selection_steps = 2 * -(-len(data[0].read_text().splitlines()) // 8)
    stopper = MemoryReporter(stop_after_steps=selection_steps + 3)
    stopped = run_finetune(spec_for(tmp_path / "resumed", tiny_bert, data, epochs=2, refit=True, average_last_epochs=2),
                           stopper)
    assert stopped.status == "stopped" and stopped.global_step == selection_steps + 3
    resumer = MemoryReporter()
    resumed = run_finetune(spec_for(tmp_path / "resumed", tiny_bert, data, epochs=2, refit=True, average_last_epochs=2),
                           resumer)
    assert any(m.startswith(f"Resumed refit from checkpoint at step {selection_steps + 3}") for _, m in resumer.events)
    assert resumed.global_step == straight.global_step and resumed.refit == straight.refit
    assert resumed.history == straight.history
    ws = load_file(tmp_path / "straight" / "out" / "model" / "model.safetensors")
    wr = load_file(tmp_path / "resumed" / "out" / "model" / "model.safetensors")
    assert all(torch.equal(ws[k], wr[k]) for k in ws)


def test_weight_averaging_delivers_the_mean_of_the_last_epochs(tmp_path, tiny_bert, data):
    from workers.finetune import WeightAverage

    layer = torch.nn.Linear(2, 2)
    average = WeightAverage(layer, 2)
    seen = []
    for value in (1.0, 2.0, 4.0):
        with torch.no_grad():
            layer.weight.fill_(value)
        average.add(layer)
        seen.append(value)
    average.apply(layer)
    assert torch.equal(layer.weight, torch.full((2, 2), 3.0))  # the last two only
    reporter = MemoryReporter()
    result = run_finetune(spec_for(tmp_path, tiny_bert, data, epochs=3, average_last_epochs=3), reporter)
    assert any(m == "Averaged the weights of the last 3 epochs of selection." for _, m in reporter.events)
    assert result.status == "succeeded"


def test_layer_wise_learning_rate_decay_and_frozen_embeddings(tmp_path, tiny_bert, data):
    from workers.finetune import _optimizer, build_model

    spec = spec_for(tmp_path, tiny_bert, data, layer_lr_decay=0.5, learning_rate=1e-3, freeze_embeddings=True)
    _, model, _ = build_model(spec)
    optimizer = _optimizer(model, spec, torch.device("cpu"))
    rate = {id(p): g["lr"] for g in optimizer.param_groups for p in g["params"]}
    named = dict(model.named_parameters())
    assert rate[id(named["classifier.weight"])] == 1e-3
    assert rate[id(named["bert.encoder.layer.1.output.dense.weight"])] == 1e-3 * 0.5
    assert rate[id(named["bert.encoder.layer.0.output.dense.weight"])] == 1e-3 * 0.25
    assert rate[id(named["bert.embeddings.LayerNorm.weight"])] == 1e-3 * 0.125
    assert id(named["bert.embeddings.word_embeddings.weight"]) not in rate  # frozen: no optimizer state
    boosted = _optimizer(model, spec_for(tmp_path, tiny_bert, data, layer_lr_decay=0.5, learning_rate=1e-3,
                                         head_lr_multiplier=10.0), torch.device("cpu"))
    rate = {id(p): g["lr"] for g in boosted.param_groups for p in g["params"]}
    assert rate[id(named["classifier.weight"])] == pytest.approx(1e-2)  # the fresh head: 10 × the peak
    assert rate[id(named["bert.pooler.dense.weight"])] == pytest.approx(1e-2)
    assert rate[id(named["bert.encoder.layer.1.output.dense.weight"])] == 1e-3 * 0.5  # the body as before
    run_finetune(spec_for(tmp_path, tiny_bert, data, epochs=1, freeze_embeddings=True), MemoryReporter())
    base = load_file(Path(tiny_bert) / "model.safetensors")
    tuned = load_file(tmp_path / "out" / "model" / "model.safetensors")
    word = [k for k in base if k.endswith("word_embeddings.weight")][0]
    assert torch.equal(tuned["bert.embeddings.word_embeddings.weight"], base[word])
    assert not torch.equal(tuned["bert.encoder.layer.0.output.dense.weight"],
                           base[[k for k in base if k.endswith("layer.0.output.dense.weight")][0]])


def test_schedule_choice_and_label_smoothing(tmp_path, tiny_bert, data):
    from workers.finetune import _scheduler

    spec = spec_for(tmp_path, tiny_bert, data, lr_scheduler="cosine", warmup_ratio=0.0, learning_rate=1.0)
    optimizer = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=1.0)
    scheduler = _scheduler(optimizer, spec, 10)
    for _ in range(5):
        optimizer.step()
        scheduler.step()
    assert scheduler.get_last_lr()[0] == pytest.approx(0.5)  # half-way
    for _ in range(2):
        optimizer.step()
        scheduler.step()
    assert scheduler.get_last_lr()[0] == pytest.approx(0.5 * (1 + math.cos(math.pi * 0.7)))  # not linear's 0.3
    plain = run_finetune(spec_for(tmp_path / "a", tiny_bert, data, epochs=1), MemoryReporter())
    smoothed_reporter = MemoryReporter()
    smoothed = run_finetune(spec_for(tmp_path / "b", tiny_bert, data, epochs=1, label_smoothing=0.2), smoothed_reporter)
    assert plain.best_metrics != smoothed.best_metrics or plain.history != smoothed.history
