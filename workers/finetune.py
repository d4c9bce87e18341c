"""Sequence and pair classification fine-tuning (full or LoRA), free of Django.

A clean loop rather than Trainer, so the platform's overhead is measurable and
small: length-grouped dynamic-padding batches, (fused) AdamW with warmup and a
linear or cosine decay, optional layer-wise learning-rate decay, label smoothing
and weight averaging, gradient accumulation, autocast (bf16/fp16 on CUDA, bf16
on CPUs that have it), evaluation each epoch, early stopping, best checkpoint
kept, exact resume, and a reporter for progress, metrics, checkpoints and stop
requests.

Two phases: *selection* trains on the train split while the validation split
picks the epoch (and so is optimistic as a score); with `refit`, a fresh model
is then trained on train + validation for the chosen number of epochs, and
that one is the result. A `test_file` is scored once, with the final model,
after every choice was made: the honest figure.
"""
from __future__ import annotations

import contextlib
import json
import math
import os
import random
import re
import shutil
import time
from dataclasses import dataclass, field

import torch

from . import cards, checkpoints, distributed
from .archive import zip_folder
from .data import carve_test, collate, encode, epoch_batches, read_jsonl
from .evaluation import classification_metrics
from .reporting import Reporter
from .spec import FineTuneSpec

LOG_EVERY_STEPS = 10


@dataclass
class FineTuneResult:
    status: str  # succeeded | stopped
    stop_reason: str | None
    global_step: int
    total_steps: int
    best_metrics: dict | None
    history: list[dict] = field(default_factory=list)
    train_examples_seen: int = 0
    train_seconds: float = 0.0
    train_tokens: int = 0  # this attempt's: the real (unpadded) tokens of the training examples it processed
    device: str = "cpu"
    precision: str = "fp32"
    # The final model on spec.test_file (accuracy, macro_f1, eval_loss, rows), computed once after training.
    test_metrics: dict | None = None
    # With refit: {"epochs": chosen by validation, "train_rows": train + validation, "selection_best_step"}.
    refit: dict | None = None


def resolve_device(spec: FineTuneSpec) -> torch.device:
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu") if spec.device == "auto" else torch.device(spec.device)
    if device.type == "cuda" and distributed.world()[1] > 1:  # one GPU per rank (torchrun's LOCAL_RANK)
        return torch.device("cuda", torch.cuda.current_device())
    return device


def resolve_precision(spec: FineTuneSpec, device: torch.device) -> str:
    if spec.precision != "auto":
        return spec.precision
    if device.type == "cuda":
        return "bf16" if torch.cuda.is_bf16_supported() else "fp16"
    # CPUs with native bf16 (AVX512-BF16 / AMX): bf16 autocast trained MiniLM on
    # BANKING77 1.39x faster than fp32 at the same accuracy (docs/jobs.md).
    return "bf16" if cpu_has_native_bf16() else "fp32"


def cpu_has_native_bf16() -> bool:
    try:
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):
        return False


def seed_everything(seed: int) -> None:
    random.seed(seed)
    torch.manual_seed(seed)
    if torch.cuda.is_available():
        torch.cuda.manual_seed_all(seed)


def build_model(spec: FineTuneSpec):
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(spec.base_model_path)
    label_ids = {label: i for i, label in enumerate(spec.labels)}
    _check_head_labels(spec)
    model = AutoModelForSequenceClassification.from_pretrained(
        spec.base_model_path, num_labels=len(spec.labels), id2label={i: l for l, i in label_ids.items()},
        label2id=label_ids, use_safetensors=True,
    )
    if spec.method == "lora":
        from peft import LoraConfig, TaskType, get_peft_model

        head = lora_head_modules(model) if spec.lora_head_modules is None else list(spec.lora_head_modules)
        # The head trains in full (peft adds the classifier itself); LoRA adapts the encoder only.
        inside_head = [name for name, module in model.named_modules() if isinstance(module, torch.nn.Linear)
                       and set(name.split(".")) & {*head, "classifier", "score"}]
        model = get_peft_model(model, LoraConfig(
            task_type=TaskType.SEQ_CLS, r=spec.lora_r, lora_alpha=spec.lora_alpha, lora_dropout=spec.lora_dropout,
            target_modules=list(spec.lora_targets), modules_to_save=head or None, exclude_modules=inside_head or None))
    elif spec.freeze_embeddings:
        model.get_input_embeddings().weight.requires_grad_(False)
    return tokenizer, model, label_ids


# What sits between the encoder and the classifier (BERT's pooler, DistilBERT's
# pre_classifier): part of the head, so LoRA trains it in full, like the
# classifier. A frozen pooler kept MiniLM's LoRA far below its full fine-tune
# (docs/jobs.md): the sentence-transformers checkpoint never trained it for this.
HEAD_MODULES = ("pooler", "pre_classifier")


def lora_head_modules(model) -> list[str]:
    names = {name.rsplit(".", 1)[-1] for name, _ in model.named_modules()}
    return [n for n in HEAD_MODULES if n in names]


def _check_head_labels(spec: FineTuneSpec) -> None:
    """A model that already has a trained head (recovery after pruning, a
    student cut from a teacher) must keep its label order, or its head would
    silently predict the wrong names."""
    from transformers import AutoConfig

    config = AutoConfig.from_pretrained(spec.base_model_path)
    if not any(a.endswith("ForSequenceClassification") for a in (config.architectures or [])):
        return  # a bare encoder: the head starts fresh
    trained = [config.id2label[i] for i in range(config.num_labels)]
    if trained != list(spec.labels):
        raise ValueError(f"The model's labels ({len(trained)}) differ from the job's ({len(spec.labels)}) or are in another order.")


def zero_weight_masks(model) -> list[tuple[torch.nn.Parameter, torch.Tensor]]:
    """Where the encoder's Linear weights are zero now, they must stay zero."""
    from .compression.prune import prunable_linears

    return [(module.weight, module.weight.detach() != 0) for _name, module in prunable_linears(model)]


def teacher_logits(spec: FineTuneSpec, rows: list[dict], label_ids: dict[str, int], device, precision: str) -> torch.Tensor:
    """The teacher's logits for every training row, computed once (the teacher
    is frozen and runs without dropout, so they never change), with the
    teacher's own tokenizer: a student from another model family works too."""
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(spec.teacher_model_path)
    teacher = AutoModelForSequenceClassification.from_pretrained(spec.teacher_model_path, use_safetensors=True).to(device).eval()
    if teacher.config.num_labels != len(label_ids):
        raise ValueError(f"The teacher predicts {teacher.config.num_labels} labels; the job has {len(label_ids)}.")
    examples = encode(rows, tokenizer, spec.task, label_ids, spec.max_length)
    order = sorted(range(len(examples)), key=lambda i: len(examples[i]["input_ids"]))
    logits = torch.zeros(len(examples), len(label_ids))
    pad = tokenizer.pad_token_id or 0
    with torch.inference_mode():
        for start in range(0, len(order), spec.eval_batch_size):
            chunk = order[start:start + spec.eval_batch_size]
            batch = {k: v.to(device) for k, v in collate(examples, chunk, pad).items() if k != "labels"}
            with _autocast(device, precision):
                logits[chunk] = teacher(**batch).logits.float().cpu()
    del teacher
    return logits


def distillation_loss(student_logits, teacher_logits, labels, *, temperature: float, alpha: float):
    """Hinton et al.: KL between temperature-softened distributions, scaled by
    T^2 so its gradients keep their size, mixed with cross-entropy on the labels."""
    import torch.nn.functional as F

    student_logits = student_logits.float()
    soft = F.kl_div(F.log_softmax(student_logits / temperature, dim=-1), F.softmax(teacher_logits / temperature, dim=-1),
                    reduction="batchmean") * temperature ** 2
    return alpha * soft + (1 - alpha) * F.cross_entropy(student_logits, labels)


def _layer_depth(name: str, layers: int) -> int:
    """0 for the embeddings, 1…layers for the encoder's blocks, layers + 1 for
    what sits on top (pooler, classifier head)."""
    match = re.search(r"\.layers?\.(\d+)\.", name)
    if match:
        return min(layers, int(match.group(1)) + 1)
    return 0 if "embeddings" in name else layers + 1


def _optimizer(model, spec: FineTuneSpec, device: torch.device):
    """AdamW, no decay on biases and LayerNorms; with layer_lr_decay < 1 each
    block below the head trains at decay^(distance from the top) of the peak
    rate (ELECTRA/BEiT's layer-wise decay); the head (pooler, classifier) at
    head_lr_multiplier times the peak. Fused where the engine has it: on
    these CPUs the per-tensor AdamW took 43 % of a MiniLM step (bench/profile_step.py)."""
    layers = int(getattr(getattr(model, "config", None), "num_hidden_layers", 0) or 0)
    groups: dict[tuple[float, float], list] = {}
    for name, param in model.named_parameters():
        if not param.requires_grad:
            continue
        decay = 0.0 if param.ndim < 2 or "LayerNorm" in name or name.endswith(".bias") else spec.weight_decay
        depth = _layer_depth(name, layers)
        scale = spec.layer_lr_decay ** (layers + 1 - depth) if layers and spec.layer_lr_decay < 1 else 1.0
        if depth == layers + 1:  # the head starts from random weights: larger steps than the pretrained body
            scale *= spec.head_lr_multiplier
        groups.setdefault((decay, scale), []).append(param)
    param_groups = [{"params": params, "weight_decay": decay, "lr": spec.learning_rate * scale}
                    for (decay, scale), params in groups.items()]
    fused = device.type in ("cpu", "cuda") and all(p.dtype == torch.float32 for g in param_groups for p in g["params"])
    return torch.optim.AdamW(param_groups, lr=spec.learning_rate, fused=fused or None)


def _scheduler(optimizer, spec: FineTuneSpec, total_steps: int):
    from transformers import get_scheduler

    return get_scheduler(spec.lr_scheduler, optimizer, num_warmup_steps=int(spec.warmup_ratio * total_steps),
                         num_training_steps=total_steps)


def _autocast(device: torch.device, precision: str):
    if precision in ("bf16", "fp16"):
        dtype = torch.bfloat16 if precision == "bf16" else torch.float16
        return torch.autocast(device_type=device.type, dtype=dtype)
    return contextlib.nullcontext()


def evaluate(model, examples, spec: FineTuneSpec, device, precision: str, pad_token_id: int) -> dict[str, float]:
    model.eval()
    order = sorted(range(len(examples)), key=lambda i: len(examples[i]["input_ids"]))
    predictions, labels, loss_sum = [0] * len(examples), [e["labels"] for e in examples], 0.0
    with torch.no_grad():
        for start in range(0, len(order), spec.eval_batch_size):
            chunk = order[start:start + spec.eval_batch_size]
            batch = {k: v.to(device) for k, v in collate(examples, chunk, pad_token_id).items()}
            with _autocast(device, precision):
                out = model(**batch)
            loss_sum += float(out.loss) * len(chunk)
            for i, p in zip(chunk, out.logits.argmax(-1).tolist()):
                predictions[i] = p
    model.train()
    metrics = classification_metrics(predictions, labels, len(spec.labels))
    metrics["eval_loss"] = loss_sum / max(1, len(examples))
    return metrics


class WeightAverage:
    """The mean of the trainable weights at the ends of the last `count` epochs
    run (checkpoint averaging, as fairseq's average_checkpoints; the last ones
    before an early stop too), kept as CPU fp32 copies that travel in the step
    checkpoints, so a resumed run averages the same epochs."""

    def __init__(self, model, count: int):
        self.count = count
        self.names = [n for n, p in model.named_parameters() if p.requires_grad]
        self.kept: list[dict[str, torch.Tensor]] = []

    @property
    def seen(self) -> int:
        return len(self.kept)

    def add(self, model) -> None:
        params = dict(model.named_parameters())
        self.kept.append({n: params[n].detach().to("cpu", torch.float32, copy=True) for n in self.names})
        del self.kept[:-self.count]

    def apply(self, model) -> None:
        params = dict(model.named_parameters())
        with torch.no_grad():
            for name in self.names:
                params[name].copy_(torch.stack([k[name] for k in self.kept]).mean(0).to(params[name].dtype))

    def tensors(self) -> dict[str, torch.Tensor]:
        return {f"average.{i}.{name}": value for i, kept in enumerate(self.kept) for name, value in kept.items()}

    def load(self, tensors: dict[str, torch.Tensor], seen: int) -> None:
        self.kept = [{n: tensors[f"average.{i}.{n}"] for n in self.names} for i in range(seen)]


@dataclass
class _Run:
    """What every training phase of one run shares."""
    spec: FineTuneSpec
    reporter: Reporter
    device: torch.device
    precision: str
    pad_id: int
    total_steps: int = 0  # as last reported with progress


@dataclass
class _Phase:
    """One pass of training: `selection` (train split, evaluated on validation
    each epoch, early stopping, best checkpoint) or `refit` (train +
    validation, the epochs selection chose, no evaluation: the last weights, or
    their average, are the model)."""
    name: str
    examples: list[dict]
    epochs: int
    folder: str  # its checkpoints (selection: the job's folder; refit: a subfolder)
    validation: list[dict]
    schedule_epochs: int | None = None  # the epochs the learning-rate schedule spans (default: `epochs`)
    first_step: int = 0  # steps count on across phases, so progress only moves forward
    steps_after: int = 0  # what later phases are expected to add to the total
    examples_before: int = 0
    soft_targets: torch.Tensor | None = None
    masks: list = field(default_factory=list)


def _fit(run: _Run, model, phase: _Phase) -> tuple[dict, str | None, int]:
    """Train `model` through `phase`, resuming from the phase's latest
    checkpoint; returns (state, stop reason or None, real tokens processed)."""
    import torch.nn.functional as F

    spec, reporter, device, precision = run.spec, run.reporter, run.device, run.precision
    examples = phase.examples
    _rank, world_size = distributed.world()
    batches_per_epoch = distributed.batches_per_rank(math.ceil(len(examples) / spec.batch_size))
    if not batches_per_epoch:
        raise ValueError(f"{len(examples)} examples make fewer batches of {spec.batch_size} than the "
                         f"{world_size} processes training together: use a smaller batch_size or fewer processes.")
    steps_per_epoch = math.ceil(batches_per_epoch / spec.gradient_accumulation_steps)
    phase_steps = steps_per_epoch * phase.epochs
    total_steps = run.total_steps = phase.first_step + phase_steps + phase.steps_after
    optimizer = _optimizer(model, spec, device)
    trainable = [p for group in optimizer.param_groups for p in group["params"]]
    scheduler = _scheduler(optimizer, spec, steps_per_epoch * (phase.schedule_epochs or phase.epochs))
    scaler = torch.amp.GradScaler("cuda", enabled=precision == "fp16" and device.type == "cuda")
    average = WeightAverage(model, spec.average_last_epochs) if spec.average_last_epochs > 1 else None
    state = {"phase": phase.name, "global_step": phase.first_step, "epoch": 0, "batch_in_epoch": 0, "best_metric": None,
             "best_step": None, "best_epoch": None, "bad_epochs": 0, "history": [], "examples_seen": phase.examples_before}
    resume_from = checkpoints.latest_checkpoint(phase.folder)
    if resume_from:
        state = checkpoints.load_checkpoint(resume_from, model=model, optimizer=optimizer, scheduler=scheduler, device=device)
        if average is not None:
            average.load(checkpoints.load_extra(resume_from), state.get("averaged", 0))
        reporter.event(level="info", message=f"Resumed {phase.name} from checkpoint at step {state['global_step']} "
                                             f"(epoch {state['epoch'] + 1})."
                       if phase.name != "selection" else
                       f"Resumed from checkpoint at step {state['global_step']} (epoch {state['epoch'] + 1}).")
    last_checkpoint_step = state["global_step"]

    def checkpoint(batch_in_epoch: int, epoch: int) -> None:
        nonlocal last_checkpoint_step
        if not reporter.confirm_lease():
            return
        last_checkpoint_step = state["global_step"]
        snapshot = {**state, "batch_in_epoch": batch_in_epoch, "epoch": epoch, "averaged": average.seen if average else 0}
        path = checkpoints.save_checkpoint(phase.folder, model=model, optimizer=optimizer, scheduler=scheduler, state=snapshot,
                                           extra=average.tensors() if average else None)
        reporter.checkpoint_saved(step=state["global_step"], path=path, metrics=None, is_best=False)

    running_loss, running_count, tokens_seen, stop_reason = 0.0, 0, 0, None
    window = {"examples": 0, "since": time.perf_counter()}  # the live examples/s of the last logged steps
    loss_key = "train_loss" if phase.name == "selection" else f"{phase.name}_train_loss"
    model.train()
    train_model = distributed.wrap(model, device)  # DDP across the ranks; `model` itself when alone
    epoch = state["epoch"]
    while epoch < phase.epochs and stop_reason is None:
        batches = distributed.shard(epoch_batches(examples, spec.batch_size, seed=spec.seed, epoch=epoch,
                                                  group_by_length=spec.group_by_length))
        for index in range(state["batch_in_epoch"], len(batches)):
            batch = {k: v.to(device, non_blocking=True) for k, v in collate(examples, batches[index], run.pad_id).items()}
            labels = batch.pop("labels")
            with _autocast(device, precision):
                logits = train_model(**batch).logits
            if phase.soft_targets is None:
                loss = F.cross_entropy(logits.float(), labels, label_smoothing=spec.label_smoothing)
            else:
                loss = distillation_loss(logits, phase.soft_targets[batches[index]], labels,
                                         temperature=spec.distill_temperature, alpha=spec.distill_alpha)
            loss = loss / spec.gradient_accumulation_steps
            scaler.scale(loss).backward()
            running_loss += float(loss.detach()) * spec.gradient_accumulation_steps
            running_count += 1
            state["examples_seen"] += len(batches[index]) * world_size  # every rank a batch this size
            window["examples"] += len(batches[index]) * world_size
            tokens_seen += sum(len(examples[i]["input_ids"]) for i in batches[index]) * world_size
            last_in_epoch = index == len(batches) - 1
            if (index + 1) % spec.gradient_accumulation_steps and not last_in_epoch:
                continue
            scaler.unscale_(optimizer)
            torch.nn.utils.clip_grad_norm_(trainable, 1.0)
            scaler.step(optimizer)
            scaler.update()
            if phase.masks:
                with torch.no_grad():
                    for weight, keep in phase.masks:
                        weight.mul_(keep)
            scheduler.step()
            optimizer.zero_grad(set_to_none=True)
            state["global_step"] += 1
            step = state["global_step"]
            fractional_epoch = epoch + (index + 1) / len(batches)
            reporter.progress(step=step, total_steps=total_steps, epoch=fractional_epoch)
            if step % LOG_EVERY_STEPS == 0:
                seconds = max(1e-9, time.perf_counter() - window["since"])
                reporter.metrics(step=step, epoch=fractional_epoch,
                                 values={loss_key: running_loss / running_count, "learning_rate": scheduler.get_last_lr()[0],
                                         "examples_per_second": window["examples"] / seconds})
                running_loss, running_count = 0.0, 0
                window = {"examples": 0, "since": time.perf_counter()}
            if step % spec.checkpoint_every_steps == 0 and not last_in_epoch:
                checkpoint(index + 1, epoch)
            stop_reason = distributed.agree_stop(reporter.should_stop())  # rank 0's answer, on every rank
            if stop_reason:
                if stop_reason != "lease lost":  # the checkpoints belong to the new owner now
                    checkpoint(index + 1, epoch)
                reporter.event(level="warning", message=f"Stopped at step {step}: {stop_reason}.")
                break
        if stop_reason:
            break
        if average is not None:
            average.add(model)
        if phase.validation:
            metrics = evaluate(model, phase.validation, spec, device, precision, run.pad_id)
            state["history"].append({"epoch": epoch + 1, "step": state["global_step"], **metrics})
            reporter.metrics(step=state["global_step"], epoch=float(epoch + 1), values=metrics)
            score = metrics.get(spec.metric_for_best)
            if _becomes_best(spec, state, score):
                state.update(best_metric=score, best_step=state["global_step"], best_epoch=epoch + 1, bad_epochs=0)
                if reporter.confirm_lease():
                    path = checkpoints.save_best(phase.folder, model=model, metrics=metrics, step=state["global_step"],
                                                 epoch=epoch + 1)
                    reporter.checkpoint_saved(step=state["global_step"], path=path, metrics=metrics, is_best=True)
            else:
                state["bad_epochs"] += 1
        epoch += 1
        state["batch_in_epoch"] = 0
        stopping_early = bool(phase.validation and spec.select_best and spec.early_stopping_patience
                              and state["bad_epochs"] >= spec.early_stopping_patience)
        # An epoch-end checkpoint is skipped after the last epoch, or when a periodic
        # one is recent: resuming then replays a few steps instead of paying a save.
        recent = state["global_step"] - last_checkpoint_step < spec.checkpoint_every_steps // 2
        if epoch < phase.epochs and not stopping_early and not recent:
            checkpoint(0, epoch)
        if stopping_early and epoch < phase.epochs:
            reporter.event(level="info", message=f"Early stop after epoch {epoch}: {spec.metric_for_best} did not improve "
                                                 f"for {state['bad_epochs']} epoch(s).")
            break
    state["epochs_run"] = epoch
    if stop_reason is None and average is not None and average.seen > 1:
        _finish_average(run, model, phase, state, average)
    distributed.barrier()  # rank 0's last checkpoint written before any rank reads it back
    return state, stop_reason, tokens_seen


def _becomes_best(spec: FineTuneSpec, state: dict, score: float | None) -> bool:
    """Whether the model just scored is the phase's best: the higher score, or always the latest when
    validation chooses nothing (spec.select_best False)."""
    if not spec.select_best:
        return True
    return score is not None and (state["best_metric"] is None or score > state["best_metric"])


def _finish_average(run: _Run, model, phase: _Phase, state: dict, average: WeightAverage) -> None:
    """The average of the last epochs' weights: the refit's model; in selection
    a candidate scored on validation like every epoch (kept as best if better)."""
    average.apply(model)
    run.reporter.event(level="info", message=f"Averaged the weights of the last {average.seen} epochs of {phase.name}.")
    if not phase.validation:
        return
    metrics = {**evaluate(model, phase.validation, run.spec, run.device, run.precision, run.pad_id),
               "averaged_epochs": average.seen}
    state["averaged_metrics"] = metrics
    score = metrics.get(run.spec.metric_for_best)
    if _becomes_best(run.spec, state, score):
        state.update(best_metric=score, best_step=state["global_step"], best_epoch=state["epochs_run"])
        if run.reporter.confirm_lease():
            path = checkpoints.save_best(phase.folder, model=model, metrics=metrics, step=state["global_step"],
                                         epoch=state["epochs_run"])
            run.reporter.checkpoint_saved(step=state["global_step"], path=path, metrics=metrics, is_best=True)


def run_finetune(spec: FineTuneSpec, reporter: Reporter) -> FineTuneResult:
    """Selection (train split; validation picks the epoch), then with `refit`
    a fresh fit on train + validation for the chosen epochs; with a test file,
    the final model scored once on it, after everything was chosen."""
    if spec.world_size > 1 and distributed.world()[1] == 1:  # the worker: start the ranks, relay rank 0's reports
        return FineTuneResult(**distributed.launch(spec, reporter, processes=spec.world_size))
    if spec.torch_threads:
        torch.set_num_threads(spec.torch_threads)
    device = resolve_device(spec)
    precision = resolve_precision(spec, device)
    seed_everything(spec.seed)
    tokenizer, model, label_ids = build_model(spec)
    model.to(device)
    run = _Run(spec=spec, reporter=reporter, device=device, precision=precision, pad_id=tokenizer.pad_token_id or 0)
    train_rows = read_jsonl(spec.train_file)
    test_rows = read_jsonl(spec.test_file) if spec.test_file else []
    if spec.test_fraction:
        train_rows, test_rows = carve_test(train_rows, spec.test_fraction)
    train = encode(train_rows, tokenizer, spec.task, label_ids, spec.max_length)
    validation_rows = read_jsonl(spec.validation_file)
    validation = encode(validation_rows, tokenizer, spec.task, label_ids, spec.max_length)
    test = encode(test_rows, tokenizer, spec.task, label_ids, spec.max_length)
    if not train:
        raise ValueError("The training split is empty.")
    refit = bool(spec.refit and validation)
    steps_per_epoch = lambda rows: math.ceil(  # noqa: E731
        distributed.batches_per_rank(math.ceil(rows / spec.batch_size)) / spec.gradient_accumulation_steps)

    masks = zero_weight_masks(model) if spec.keep_zero_weights else []
    soft_targets = None
    if spec.teacher_model_path:
        soft_targets = teacher_logits(spec, train_rows + (validation_rows if refit else []), label_ids, device, precision).to(device)
        reporter.event(level="info", message=f"Teacher logits computed for {len(train)} training examples "
                                             f"(temperature {spec.distill_temperature}, alpha {spec.distill_alpha}).")
    what = "distillation" if soft_targets is not None else "recovery fine-tune (zeros kept)" if masks else f"{spec.method} fine-tune"
    selection = _Phase(name="selection", examples=train, epochs=spec.epochs, folder=spec.checkpoint_dir, validation=validation,
                       steps_after=steps_per_epoch(len(train) + len(validation)) * spec.epochs if refit else 0,
                       soft_targets=soft_targets[:len(train)] if soft_targets is not None else None, masks=masks)
    done = checkpoints.read_phase_done(spec.checkpoint_dir, "selection") if refit else None
    started = time.perf_counter()
    tokens = 0
    if done is None:
        reporter.event(level="info", message=f"Training on {device.type} in {precision}: {len(train)} examples, "
                                             f"{steps_per_epoch(len(train)) * spec.epochs + selection.steps_after} steps, {what}"
                                             + (", then a refit on train + validation." if refit else "."))
        state, stop_reason, tokens = _fit(run, model, selection)
    else:
        state, stop_reason = done, None
    best = checkpoints.load_best(spec.checkpoint_dir, model, device) if not refit or stop_reason else None
    refit_info = None
    if refit and stop_reason is None:
        if done is None and reporter.confirm_lease():
            # A resume point: a later attempt starts the refit from here.
            path = checkpoints.write_phase_done(spec.checkpoint_dir, "selection", state)
            reporter.checkpoint_saved(step=state["global_step"], path=path, metrics=None, is_best=False)
        chosen = state.get("best_epoch") or state["epochs_run"]
        refit_info = {"epochs": chosen, "train_rows": len(train) + len(validation),
                      "selection_best_step": state.get("best_step")}
        reporter.event(level="info", message=f"Refit: a fresh model on train + validation ({len(train) + len(validation)} "
                                             f"examples) for {chosen} epoch(s), the count validation chose.")
        seed_everything(spec.seed)
        del model
        tokenizer, model, label_ids = build_model(spec)
        model.to(device)
        # The refit replays the selection run's schedule (planned over spec.epochs) up to the chosen
        # epoch: the trajectory validation vouched for, on more data. A schedule squeezed into the
        # chosen epochs decays sooner and under-trains (bench/finetune_options.py, docs/jobs.md).
        refit_phase = _Phase(name="refit", examples=train + validation, epochs=chosen, schedule_epochs=spec.epochs,
                             validation=[],
                             folder=os.path.join(spec.checkpoint_dir, "refit"), first_step=state["global_step"],
                             examples_before=state["examples_seen"], soft_targets=soft_targets,
                             masks=zero_weight_masks(model) if spec.keep_zero_weights else [])
        refit_state, stop_reason, refit_tokens = _fit(run, model, refit_phase)
        tokens += refit_tokens
        if stop_reason:  # the selection's best stays the model of a stopped run
            best = checkpoints.load_best(spec.checkpoint_dir, model, device)
        else:
            best = checkpoints.read_best(spec.checkpoint_dir)
            best = {**(best or {"metrics": {}}), "refit": refit_info}
        state = {**state, "global_step": refit_state["global_step"], "examples_seen": refit_state["examples_seen"]}
    train_seconds = time.perf_counter() - started
    test_metrics = None
    if test and best is not None and stop_reason is None:
        test_metrics = {**evaluate(model, test, spec, device, precision, run.pad_id), "rows": len(test)}
        reporter.event(level="info", message=f"Test split ({len(test)} rows, never used for training or selection): "
                                             f"accuracy {test_metrics['accuracy']:.4f}, macro-F1 {test_metrics['macro_f1']:.4f}.")
    if best is not None and stop_reason != "lease lost" and distributed.is_main():
        export(spec, model, tokenizer, best, state, reporter, precision=precision, device=device,
               data={"train_rows": len(train), "validation_rows": len(validation), "test_rows": len(test)},
               test_metrics=test_metrics, refit=refit_info if stop_reason is None else None)
    return FineTuneResult(
        status="stopped" if stop_reason else "succeeded", stop_reason=stop_reason, global_step=state["global_step"],
        total_steps=run.total_steps, best_metrics=best["metrics"] if best else None,
        history=state["history"], train_examples_seen=state["examples_seen"], train_seconds=train_seconds,
        train_tokens=tokens, device=device.type, precision=precision, test_metrics=test_metrics, refit=refit_info,
    )


def export(spec: FineTuneSpec, model, tokenizer, best: dict, state: dict, reporter: Reporter, *, precision: str, device,
           data: dict | None = None, test_metrics: dict | None = None, refit: dict | None = None) -> None:
    """The final weights as a loadable model folder (safetensors), the tokenizer,
    the label map in config.json, a model card and an eval report; for LoRA also
    the adapter on its own, with its own card, naming the base model publicly.
    The report keeps the selection split's figures apart from the test split's:
    validation chose the epoch, so only `test` is an unbiased estimate."""
    os.makedirs(spec.output_dir, exist_ok=True)
    model_dir = os.path.join(spec.output_dir, "model")
    shutil.rmtree(model_dir, ignore_errors=True)
    report = {"best": best, "history": state["history"],
              "selection": {"split": "validation", "metric": spec.metric_for_best, "note": (
                  "chose the epoch (and the checkpoint): an optimistic estimate; see test for unseen data")},
              "test": test_metrics, "refit": refit, "labels": spec.labels, "task": spec.task,
              "method": spec.method, "precision": precision, "device": str(device.type), "data": data or {},
              "hyperparameters": cards.method_hyperparameters(spec.to_dict(), spec.method),
              "hyperparameters_set_by_user": (spec.card or {}).get("user_set")}
    if spec.method == "lora":
        adapter_dir = os.path.join(spec.output_dir, "adapter")
        shutil.rmtree(adapter_dir, ignore_errors=True)
        model.save_pretrained(adapter_dir, safe_serialization=True)
        # The adapter names its base by its public id, never by a path on this server (set after
        # saving: peft looks the base up by that name while saving, which would go to the Hub).
        adapter_config = os.path.join(adapter_dir, "adapter_config.json")
        with open(adapter_config) as fh:
            settings = json.load(fh)
        settings["base_model_name_or_path"] = base_model_public_name(spec)
        with open(adapter_config, "w") as fh:
            json.dump(settings, fh, indent=2, sort_keys=True)
        model.get_base_model().config.save_pretrained(adapter_dir)  # the base's architecture with this model's labels
        tokenizer.save_pretrained(adapter_dir)
        _write_card(adapter_dir, cards.finetune_card(spec, report, archive="adapter.zip",
                                                     files=cards.archive_files(adapter_dir)))  # replaces peft's template
        reporter.artifact(name="adapter.zip", path=zip_folder(adapter_dir, os.path.join(spec.output_dir, "adapter.zip")), kind="adapter")
        model = model.merge_and_unload()
    model.to("cpu").save_pretrained(model_dir, safe_serialization=True)
    tokenizer.save_pretrained(model_dir)
    with open(os.path.join(spec.output_dir, "eval_report.json"), "w") as fh:
        json.dump(report, fh, indent=2)
    card = cards.finetune_card(spec, report, archive="model.zip", files=cards.archive_files(model_dir))
    _write_card(model_dir, card)
    _write_card(spec.output_dir, card)
    reporter.artifact(name="model.zip", path=zip_folder(model_dir, os.path.join(spec.output_dir, "model.zip")), kind="model")
    reporter.artifact(name="eval_report.json", path=os.path.join(spec.output_dir, "eval_report.json"), kind="report")
    reporter.artifact(name="README.md", path=os.path.join(spec.output_dir, "README.md"), kind="model_card")


def base_model_public_name(spec: FineTuneSpec) -> str:
    """The base model's Hugging Face id, else its catalog name, else its folder's name."""
    base = (spec.card or {}).get("base_model") or {}
    return base.get("hub_id") or base.get("name") or os.path.basename(os.path.normpath(spec.base_model_path))


def _write_card(folder: str, card: str) -> None:
    with open(os.path.join(folder, "README.md"), "w") as fh:
        fh.write(card)
