"""A compression job from start to finish, free of Django: measure the source
model, compress it (int8 quantization, pruning with an optional search and
recovery fine-tune, or distillation into a smaller student), measure again
with the same harness, judge against the accuracy guard, and write the report
and a model card whose loading code is tested."""
from __future__ import annotations

import json
import os
from dataclasses import dataclass, field

from ..archive import zip_folder
from ..cards import archive_files
from ..data import read_jsonl
from ..kinds import CompressionOptions, DistillOptions, PruneOptions, default_of, strict
from ..reporting import Reporter
from . import onnx_export, structured
from .cards import compression_card
from .measure import accuracy, compare, faster_beyond_noise, measure, spread
from .prune import apply_pruning, search_amount
from .quantize import quantize_dynamic_int8, save_int8

@dataclass
class CompressionSpec:
    kind: str  # quantize | prune | distill
    source_model_dir: str
    eval_file: str  # the rows the guard and the before/after report measure
    output_dir: str
    task: str
    # The options' defaults (and bounds, help) are declared once, in workers/kinds.py.
    max_accuracy_drop: float = default_of(CompressionOptions, "max_accuracy_drop")  # points
    max_length: int = 128
    latency_samples: int = 50
    threads: int | None = None
    # prune
    prune_method: str = default_of(PruneOptions, "prune_method")  # one of kinds.PRUNE_METHODS
    sparsity: float | None = 0.5  # the share to remove; None: the largest within the guard (searched)
    recovery_epochs: int = default_of(PruneOptions, "recovery_epochs")
    # distill
    student_layers: int | None = None  # cut from the teacher (every other layer)…
    student_model_path: str | None = None  # …or another (catalog) model
    temperature: float = default_of(DistillOptions, "temperature")
    alpha: float = default_of(DistillOptions, "alpha")
    # training phases (recovery, distillation)
    train_file: str | None = None
    # The validation split when the source model trained on it (a refit fine-tune; eval_file is then rows it
    # held out). A model that starts from the source's weights has seen those rows too, so they choose
    # nothing: the training phases score them each epoch but run every epoch and keep the last, recovery is
    # delivered without a contest against one-shot; only the pruning search probes them (the guard, on
    # eval_file, judges what it chose).
    validation_seen_by_source: str | None = None
    measured_on: str | None = None  # eval_file in words, for the report (None: the validation split)
    checkpoint_dir: str | None = None
    training: dict = field(default_factory=dict)  # FineTuneSpec fields: epochs, learning_rate, batch_size, …
    onnx: bool = True  # quantize: also an onnxruntime int8 export, when installed
    # chat models (task "chat", quantize only: chat_quantize.py)
    generation_prompts: int = 20  # held-back prompts replied to (exact match, token F1)
    speed_tokens: int = 32  # new tokens per reply when timing generation at batch 1 and 8
    card: dict = field(default_factory=dict)  # what the model cards say that the worker cannot know (workers/cards.py)


class Stopped(Exception):
    def __init__(self, reason: str):
        super().__init__(reason)
        self.reason = reason


class _TrainingPhase:
    """The job's reporter for a training phase inside a compression job: the
    phase's own model.zip and card are intermediate files, not artifacts."""

    def __init__(self, reporter: Reporter):
        self._reporter = reporter

    def __getattr__(self, name):
        return getattr(self._reporter, name)

    def artifact(self, *, name, path, kind):
        return None


def _train(spec: CompressionSpec, reporter: Reporter, *, name: str, base_dir: str, labels: list[str], epochs: int,
           keep_zero_weights: bool = False, teacher_dir: str | None = None) -> str:
    """Fine-tune `base_dir` on the training split with the job's hyperparameters
    (resumable from its checkpoints); the folder of the best model."""
    from ..finetune import run_finetune
    from ..spec import FineTuneSpec

    if not spec.train_file:
        raise ValueError("This compression needs training data (the dataset's train split).")
    # The phase sets its epochs; every other training key must be a FineTuneSpec field (strict: never dropped).
    # It never refits: its validation split chooses its best epoch (or, seen by the source, nothing).
    tuning = {k: v for k, v in spec.training.items() if k not in ("epochs", "refit")}
    finetune_spec = strict(
        FineTuneSpec, tuning,
        task=spec.task, base_model_path=base_dir, train_file=spec.train_file, validation_file=spec.validation_seen_by_source or spec.eval_file, labels=labels,
        output_dir=os.path.join(spec.output_dir, name), checkpoint_dir=os.path.join(spec.checkpoint_dir or spec.output_dir, name),
        method="full", epochs=epochs, refit=False, keep_zero_weights=keep_zero_weights, teacher_model_path=teacher_dir,
        distill_temperature=spec.temperature, distill_alpha=spec.alpha, torch_threads=spec.threads,
        select_best=not spec.validation_seen_by_source)
    outcome = run_finetune(finetune_spec, _TrainingPhase(reporter))
    if outcome.status != "succeeded":
        raise Stopped(outcome.stop_reason or "stopped")
    return os.path.join(finetune_spec.output_dir, "model")


def _save_dense(model, tokenizer, folder: str) -> str:
    model.save_pretrained(folder, safe_serialization=True)
    tokenizer.save_pretrained(folder)
    return folder


def _prune(spec, reporter, fp32, tokenizer, rows, labels, before, common) -> tuple[str, dict]:
    """Prune (searching the amount when asked), save, recover when asked. The search probes the
    validation split (validation_seen_by_source, or `rows` when the source never trained on them)."""
    selection_rows = _labelled_rows(spec.validation_seen_by_source, labels) if spec.validation_seen_by_source else rows

    def evaluate(model):
        return accuracy(model, tokenizer, selection_rows, task=spec.task, labels=labels, max_length=spec.max_length)

    method = spec.prune_method
    grid = structured.amount_grid(fp32, method)
    drop_order = None
    if method == "layers":  # greedy, measured: cheapest layers to lose first
        total = len(structured.encoder_layers(fp32))
        needed = total - 1 if spec.sparsity is None else min(total - 1, int(round(spec.sparsity * total)))
        drop_order = structured.layer_drop_order(fp32, evaluate, needed)
    details: dict = {}
    amount = spec.sparsity
    if amount is None:
        baseline = before["accuracy"] if selection_rows is rows else evaluate(fp32)  # before any pruning
        search = search_amount(fp32, method, evaluate=evaluate, baseline_accuracy=baseline,
                               max_drop_points=spec.max_accuracy_drop, grid=grid, drop_order=drop_order,
                               should_stop=reporter.should_stop)
        if reporter.should_stop():
            raise Stopped(reporter.should_stop())
        details["search"] = search
        amount = search["chosen"] if search["chosen"] is not None else grid[0]
        reporter.event(level="info", message=(
            f"Search: {len(search['curve'])} amounts tried; the largest within {spec.max_accuracy_drop} points is {amount:.0%}."
            if search["chosen"] is not None else f"Search: even {grid[0]:.0%} loses more than {spec.max_accuracy_drop} points one-shot."))
    details["pruning"] = apply_pruning(fp32, method, amount, drop_order=drop_order)
    pruned_dir = _save_dense(fp32, tokenizer, os.path.join(spec.output_dir, "pruned" if spec.recovery_epochs else "model"))
    if not spec.recovery_epochs:
        return pruned_dir, details
    probed = [p["accuracy"] for p in details.get("search", {}).get("curve", []) if p["amount"] == round(amount, 6)]
    one_shot = probed[0] if probed else evaluate(fp32)  # the search already measured the chosen amount
    details["recovery"] = {"epochs": spec.recovery_epochs, "accuracy_one_shot": round(one_shot, 5)}
    reporter.event(level="info", message=f"Pruned {amount:.0%} ({method}); one-shot accuracy {one_shot:.2%}. "
                                         f"Recovery fine-tune for {spec.recovery_epochs} epoch(s).")
    # Zeroed weights (magnitude, heads) stay zero while recovering.
    recovered_dir = _train(spec, reporter, name="recovery", base_dir=pruned_dir, labels=labels,
                           epochs=spec.recovery_epochs, keep_zero_weights=method in ("magnitude", "heads"))
    from transformers import AutoModelForSequenceClassification

    recovered = evaluate(AutoModelForSequenceClassification.from_pretrained(recovered_dir, use_safetensors=True).eval())
    details["recovery"]["accuracy_recovered"] = round(recovered, 5)
    # Recovery is there to help: never deliver a model it made worse — judged where that is a fair contest
    # (the one-shot model keeps the source's memory of rows the source trained on; the recovered one lost it).
    if recovered < one_shot and not spec.validation_seen_by_source:
        details["recovery"]["delivered"] = "one-shot"
        reporter.event(level="warning", message=f"Recovery lowered accuracy ({one_shot:.2%} → {recovered:.2%}); "
                                                "the one-shot pruned model is delivered instead.")
        return pruned_dir, details
    details["recovery"]["delivered"] = "recovered"
    return recovered_dir, details


def _distill(spec, reporter, fp32, tokenizer, labels) -> tuple[str, dict]:
    if spec.student_model_path:
        student_dir, details = spec.student_model_path, {"student": "catalog model", "student_model": os.path.basename(spec.student_model_path)}
    else:
        total = len(structured.encoder_layers(fp32))
        layers = spec.student_layers or max(1, total // 2)
        if not 1 <= layers < total:
            raise ValueError(f"student_layers must be between 1 and {total - 1} (the teacher has {total}).")
        kept = structured.evenly_spaced(total, layers)
        structured.keep_layers(fp32, kept)  # the student starts as the teacher's layers `kept` and its head
        student_dir = _save_dense(fp32, tokenizer, os.path.join(spec.output_dir, "student-init"))
        details = {"student": "teacher layers", "teacher_layers": total, "student_layers": layers, "layers_kept": kept}
    details.update(temperature=spec.temperature, alpha=spec.alpha, epochs=spec.training.get("epochs"))
    return _train(spec, reporter, name="distillation", base_dir=student_dir, labels=labels,
                  epochs=int(spec.training.get("epochs") or 3), teacher_dir=spec.source_model_dir), {"distillation": details}


def _labelled_rows(path: str, labels: list[str]) -> list[dict]:
    rows = [r for r in read_jsonl(path) if r.get("label") in set(labels)]
    if not rows:
        raise ValueError("The evaluation split has no rows with the model's labels.")
    return rows


def run_compression(spec: CompressionSpec, reporter: Reporter) -> dict:
    if spec.task == "chat":  # a causal LM from a chat fine-tune: int8 only, judged by perplexity
        from .chat_quantize import run_chat_quantize

        return run_chat_quantize(spec, reporter)
    try:
        return _run(spec, reporter)
    except Stopped as stop:
        return {"stopped": stop.reason}


def _run(spec: CompressionSpec, reporter: Reporter) -> dict:
    import torch
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    if spec.threads:
        torch.set_num_threads(spec.threads)

    def load(folder):
        return (AutoTokenizer.from_pretrained(folder),
                AutoModelForSequenceClassification.from_pretrained(folder, use_safetensors=True).eval())

    tokenizer, fp32 = load(spec.source_model_dir)
    labels = [fp32.config.id2label[i] for i in range(fp32.config.num_labels)]
    rows = _labelled_rows(spec.eval_file, labels)
    common = dict(task=spec.task, labels=labels, max_length=spec.max_length, latency_samples=spec.latency_samples)
    reporter.progress(step=0, total_steps=3, epoch=0.0)
    before = measure(fp32, tokenizer, rows, saved_folder=spec.source_model_dir, **common)
    reporter.event(level="info", message=f"Measured the source model: accuracy {before['accuracy']:.2%}, "
                                         f"{before['throughput_batch32']} examples/s at batch 32.")
    if reporter.should_stop():
        raise Stopped(reporter.should_stop())
    model_dir = os.path.join(spec.output_dir, "model")
    extra: dict = {}
    artifacts = [("model.zip", model_dir, "model")]
    if spec.kind == "quantize":
        compressed = quantize_dynamic_int8(fp32)
        save_int8(compressed, tokenizer, model_dir)
        after = measure(compressed, tokenizer, rows, saved_folder=model_dir, **common)
        extra["method"] = "dynamic_int8"
        variants = {"torch_int8": {"artifact": "model.zip", "after": after, "ratios": compare(before, after)}}
        if spec.onnx and onnx_export.available():
            onnx_dir = os.path.join(spec.output_dir, "model-onnx")
            onnx_export.export_int8(fp32, tokenizer, onnx_dir, task=spec.task)  # quantize_dynamic left fp32 as it was
            # onnxruntime gets the threads torch has: both variants measured on the same CPU share.
            onnx_after = measure(onnx_export.OnnxClassifier(onnx_dir, threads=spec.threads or torch.get_num_threads()),
                                 tokenizer, rows, saved_folder=onnx_dir, **common)
            variants["onnx_int8"] = {"artifact": "model-onnx-int8.zip", "after": onnx_after, "ratios": compare(before, onnx_after)}
            artifacts.append(("model-onnx-int8.zip", onnx_dir, "model"))
        extra["recommendation"] = recommend(variants, spec.max_accuracy_drop)
        extra["primary"] = extra["recommendation"]["variant"]
        after = variants[extra["primary"]]["after"]
        extra["variants"] = variants
    elif spec.kind in ("prune", "distill"):
        final_dir, extra = (_prune(spec, reporter, fp32, tokenizer, rows, labels, before, common) if spec.kind == "prune"
                            else _distill(spec, reporter, fp32, tokenizer, labels))
        extra["method"] = spec.prune_method if spec.kind == "prune" else "distillation"
        if os.path.abspath(final_dir) != os.path.abspath(model_dir):
            final_tokenizer, final_model = load(final_dir)
            _save_dense(final_model, final_tokenizer, model_dir)
        final_tokenizer, final_model = load(model_dir)
        after = measure(final_model, final_tokenizer, rows, saved_folder=model_dir, **common)
    else:
        raise ValueError(f"unknown compression kind {spec.kind!r}")
    reporter.progress(step=2, total_steps=3, epoch=0.66)
    ratios = compare(before, after)
    drop = round(-ratios["accuracy_change_points"], 3)
    report = {"kind": spec.kind, **extra, "before": before, "after": after, "ratios": ratios,
              "measured_on": {"rows": len(rows), "what": spec.measured_on or "the evaluation data's validation split"},
              "guard": {"max_accuracy_drop_points": spec.max_accuracy_drop, "accuracy_drop_points": drop,
                        "passed": drop <= spec.max_accuracy_drop}}
    trained = spec.kind == "distill" or (spec.kind == "prune" and spec.recovery_epochs)
    card_context = dict(task=spec.task, max_length=spec.max_length, labels=labels, facts=spec.card,
                        training=spec.training if trained else None,
                        train_rows=len(read_jsonl(spec.train_file)) if trained else None)
    # One card per archive (its own numbers, code and files), and the job's README.md covering every download.
    for name, folder, _kind in artifacts:
        files = archive_files(folder)
        with open(os.path.join(folder, "README.md"), "w") as fh:
            fh.write(compression_card(report, archive=name, files=files, **card_context))
    with open(os.path.join(spec.output_dir, "README.md"), "w") as fh:
        fh.write(compression_card(report, archive=None, files=None, **card_context))
    report_path = os.path.join(spec.output_dir, "compression_report.json")
    with open(report_path, "w") as fh:
        json.dump(report, fh, indent=1)
    reporter.metrics(step=3, epoch=1.0, values={"accuracy": after["accuracy"], "macro_f1": after["macro_f1"],
                                                "accuracy_before": before["accuracy"]})
    for name, folder, kind in artifacts:
        reporter.artifact(name=name, path=zip_folder(folder, os.path.join(spec.output_dir, name)), kind=kind)
    reporter.artifact(name="compression_report.json", path=report_path, kind="report")
    reporter.artifact(name="README.md", path=os.path.join(spec.output_dir, "README.md"), kind="model_card")
    reporter.progress(step=3, total_steps=3, epoch=1.0)
    return report


def recommend(variants: dict, max_drop: float) -> dict:
    """The int8 download to recommend, and why. Among the variants within the
    guard (all of them if none is): the faster, when it is faster in every timed
    pass; when the passes overlap neither is faster on this worker, and the
    report says so, recommending the smaller download."""
    within = [n for n, v in variants.items() if -v["ratios"]["accuracy_change_points"] <= max_drop] or list(variants)
    ranked = sorted(within, key=lambda n: -variants[n]["after"]["throughput_batch32"])
    best = ranked[0]

    def named(n):
        return f"{variants[n]['artifact']} {spread(variants[n]['after'])}"

    if len(ranked) == 1:
        return {"variant": best, "within_noise": False,
                "message": f"{variants[best]['artifact']} is the only variant within the accuracy guard."}
    tied = [n for n in ranked[1:] if not faster_beyond_noise(variants[best]["after"], variants[n]["after"])]
    if not tied:
        return {"variant": best, "within_noise": False,
                "message": f"Recommended: {variants[best]['artifact']}, faster on this worker in every pass: "
                           f"{named(best)} against {named(ranked[1])}."}
    pool = [best, *tied]
    choice = min(pool, key=lambda n: variants[n]["after"]["size_bytes"] or 0)
    return {"variant": choice, "within_noise": True,
            "message": f"Within the noise: {' and '.join(named(n) for n in pool)} overlap, so neither is faster on this "
                       f"worker; recommended: {variants[choice]['artifact']}, the smaller download "
                       f"({variants[choice]['after']['size_bytes']} bytes)."}
