"""Supervised fine-tuning of a chat model (causal LM), full or LoRA, free of Django.

The loop of workers/finetune.py, for conversations: the loss is on the assistant tokens with weight 1
(workers/chat/data.py), summed and divided by the trained tokens of the whole optimizer step; batches are
length-grouped with dynamic padding (or packed, workers/chat/batches.py); AdamW with linear warmup and
decay, gradient accumulation, autocast (bf16/fp16 on CUDA, bf16 on CPUs that have it), optional gradient
checkpointing; validation loss and perplexity each epoch, early stopping on it, the best weights kept; an
exact resume from the latest step checkpoint (workers/checkpoints.py); progress, metrics (tokens/s,
trained tokens), events, checkpoints and stop requests through the reporter. At the end, greedy replies of
the base model (generated before the first step) and of the fine-tuned one to held-back prompts, side by
side, scored by exact match and token-F1 (workers/chat/evaluation.py); the exports are the full model
(LoRA merged, so it runs without peft), the adapter for LoRA, the tokenizer with its chat template, a
generation config that stops at the end-of-turn token, and a model card (workers/chat/card.py).
"""
from __future__ import annotations

import json
import math
import os
import shutil
import time
import warnings
from dataclasses import dataclass, field

import torch

from .. import checkpoints
from ..archive import zip_folder
from ..cards import archive_files
from ..finetune import base_model_public_name, cpu_has_native_bf16, seed_everything
from ..reporting import Reporter
from ..spec import ChatFineTuneSpec
from . import card as chat_card
from .batches import epoch_order, make_batch
from .data import ChatEncoder, EncodingReport, carve_test_conversations, encode_conversations, read_conversations
from .evaluation import (autocast, causal_lm, exact_match, generate_replies, generation_prompts, max_new_tokens_for,
                         score_replies, summed_token_loss, token_f1, validation_loss)

LOG_EVERY_STEPS = 10
# A validation loss lower by less than this share of the best one is no improvement (transformers'
# early_stopping_threshold): a flat run stops instead of creeping on by rounding noise.
MIN_RELATIVE_IMPROVEMENT = 1e-3


@dataclass
class ChatFineTuneResult:
    status: str  # succeeded | stopped
    stop_reason: str | None
    global_step: int
    total_steps: int
    best_metrics: dict | None  # eval_loss, perplexity (the best epoch's)
    history: list[dict] = field(default_factory=list)
    generation: dict | None = None  # {"prompts", "max_new_tokens", "base": {...}, "finetuned": {...}}
    train_examples_seen: int = 0  # conversations, every attempt
    train_seconds: float = 0.0
    train_tokens: int = 0  # this attempt's trained tokens (labels != -100) processed
    input_tokens: int = 0  # this attempt's tokens processed (real, not padding)
    device: str = "cpu"
    precision: str = "fp32"
    data: dict = field(default_factory=dict)  # train/validation encoding summaries (used, truncated, skipped)
    # The delivered model on the test set (attached or carved): eval_loss, perplexity, exact_match, token_f1,
    # conversations, replies_scored; None without one.
    test_metrics: dict | None = None


def resolve_device(spec: ChatFineTuneSpec) -> torch.device:
    if spec.device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(spec.device)


def resolve_precision(spec: ChatFineTuneSpec, device: torch.device) -> str:
    if spec.precision != "auto":
        return spec.precision
    if device.type == "cuda":
        return "bf16" if torch.cuda.is_bf16_supported() else "fp16"
    return "bf16" if cpu_has_native_bf16() else "fp32"


def lora_target_modules(targets) -> list[str] | str:
    """peft's target_modules: the names, or its "all-linear" shorthand (every Linear but the head)."""
    names = [targets] if isinstance(targets, str) else list(targets)
    if names in (["all-linear"], ["all_linear"]):
        return "all-linear"
    return names


def build_model(spec: ChatFineTuneSpec):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(spec.base_model_path)
    if spec.chat_template and not tokenizer.chat_template:
        tokenizer.chat_template = spec.chat_template  # saved with the exports, so downloads chat the same way
    # fp32 master weights whatever the checkpoint's dtype; autocast does the low-precision compute.
    model = AutoModelForCausalLM.from_pretrained(spec.base_model_path, use_safetensors=True, dtype=torch.float32)
    model.config.use_cache = False
    if spec.gradient_checkpointing:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    if spec.method == "lora":
        from peft import LoraConfig, TaskType, get_peft_model

        config = LoraConfig(task_type=TaskType.CAUSAL_LM, r=spec.lora_r, lora_alpha=spec.lora_alpha,
                            lora_dropout=spec.lora_dropout, target_modules=lora_target_modules(spec.lora_targets))
        try:
            with warnings.catch_warnings():  # peft 0.21 reads a property transformers 5 deprecated: its notice
                warnings.filterwarnings("ignore", "`is_gradient_checkpointing` is deprecated", FutureWarning)
                model = get_peft_model(model, config)
        except ValueError as error:  # e.g. "Target modules {...} not found in the base model"
            raise ValueError(f"LoRA targets {spec.lora_targets} do not fit this model ({model.config.model_type}): "
                             f"{error}") from error
    elif spec.method != "full":
        raise ValueError(f"Unknown method {spec.method!r}: lora or full.")
    return tokenizer, model


def _optimizer(model, spec: ChatFineTuneSpec):
    decay, no_decay = [], []
    for name, param in model.named_parameters():
        if param.requires_grad:
            (no_decay if param.ndim < 2 or name.endswith(".bias") else decay).append(param)
    return torch.optim.AdamW([{"params": decay, "weight_decay": spec.weight_decay},
                              {"params": no_decay, "weight_decay": 0.0}], lr=spec.learning_rate)


def pad_token_id_of(tokenizer) -> int:
    """Chat tokenizers often have no pad token: padding is masked and never trained, so eos serves."""
    for candidate in (tokenizer.pad_token_id, tokenizer.eos_token_id):
        if candidate is not None:
            return candidate
    return 0


def run_chat_finetune(spec: ChatFineTuneSpec, reporter: Reporter) -> ChatFineTuneResult:
    from transformers import get_linear_schedule_with_warmup

    if spec.torch_threads:
        torch.set_num_threads(spec.torch_threads)
    device = resolve_device(spec)
    precision = resolve_precision(spec, device)
    seed_everything(spec.seed)
    tokenizer, model = build_model(spec)
    model.to(device)
    encoder = ChatEncoder(tokenizer, max_length=spec.max_length)
    pad_id = pad_token_id_of(tokenizer)
    train_conversations = read_conversations(spec.train_file)
    test_conversations = read_conversations(spec.test_file) if spec.test_file else []
    if spec.test_fraction:
        train_conversations, test_conversations = carve_test_conversations(train_conversations, spec.test_fraction)
    train_report = encode_conversations(train_conversations, encoder)
    validation_conversations = read_conversations(spec.validation_file)
    validation_report = encode_conversations(validation_conversations, encoder)
    train, validation = train_report.examples, validation_report.examples
    _report_encoding(reporter, "train", train_report)
    _report_encoding(reporter, "validation", validation_report)
    if not train:
        raise ValueError(f"No training conversation is usable: {dict(train_report.skipped) or 'the split is empty'}.")

    batches_per_epoch = math.ceil(len(train) / spec.batch_size)
    steps_per_epoch = math.ceil(batches_per_epoch / spec.gradient_accumulation_steps)
    total_steps = steps_per_epoch * spec.epochs
    optimizer = _optimizer(model, spec)
    scheduler = get_linear_schedule_with_warmup(optimizer, int(spec.warmup_ratio * total_steps), total_steps)
    scaler = torch.amp.GradScaler("cuda", enabled=precision == "fp16" and device.type == "cuda")
    state = {"global_step": 0, "epoch": 0, "batch_in_epoch": 0, "best_metric": None, "best_step": None,
             "bad_epochs": 0, "history": [], "examples_seen": 0, "trained_tokens": 0, "base_generations": None}
    resume_from = checkpoints.latest_checkpoint(spec.checkpoint_dir)
    if resume_from:
        state = checkpoints.load_checkpoint(resume_from, model=model, optimizer=optimizer, scheduler=scheduler, device=device)
        reporter.event(level="info", message=f"Resumed from checkpoint at step {state['global_step']} (epoch {state['epoch'] + 1}).")

    stop_ids = sorted({*encoder.end_of_turn_ids(), *([tokenizer.eos_token_id] if tokenizer.eos_token_id is not None else [])})
    prompts = generation_prompts(validation_conversations, encoder, spec.eval_generations) if spec.eval_generations else []
    max_new_tokens = max_new_tokens_for(prompts, tokenizer, spec.generation_max_new_tokens)

    def generate(prompt_list):
        return generate_replies(model, tokenizer, prompt_list, max_new_tokens=max_new_tokens, stop_ids=stop_ids,
                                pad_token_id=pad_id, device=device, precision=precision, batch_size=spec.eval_batch_size)

    if prompts and state.get("base_generations") is None:  # the base model's replies, before any step (kept in checkpoints)
        state["base_generations"] = generate(prompts)
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    reporter.event(level="info", message=(
        f"Training on {device.type} in {precision}: {len(train)} conversations "
        f"({sum(e.trained_tokens for e in train)} trained tokens an epoch), {total_steps} steps, {spec.method} "
        f"fine-tune ({trainable:,} trainable parameters), {'packed' if spec.packing else 'padded'} batches."))

    last_checkpoint_step = state["global_step"]

    def checkpoint(batch_in_epoch: int, epoch: int) -> None:
        nonlocal last_checkpoint_step
        if not reporter.confirm_lease():
            return
        last_checkpoint_step = state["global_step"]
        snapshot = {**state, "batch_in_epoch": batch_in_epoch, "epoch": epoch}
        path = checkpoints.save_checkpoint(spec.checkpoint_dir, model=model, optimizer=optimizer, scheduler=scheduler, state=snapshot)
        reporter.checkpoint_saved(step=state["global_step"], path=path, metrics=None, is_best=False)

    started = time.perf_counter()
    window = {"loss": 0.0, "trained": 0, "tokens": 0, "since": time.perf_counter()}
    attempt_tokens = attempt_trained = 0
    stop_reason = None
    model.train()
    accumulation = spec.gradient_accumulation_steps
    epoch = state["epoch"]
    while epoch < spec.epochs and stop_reason is None:
        batches = epoch_order(train, spec.batch_size, seed=spec.seed, epoch=epoch, group_by_length=spec.group_by_length)
        for index in range(state["batch_in_epoch"], len(batches)):
            group_start = index - index % accumulation
            group_tokens = sum(train[i].trained_tokens for b in batches[group_start:group_start + accumulation] for i in b)
            batch = {k: v.to(device, non_blocking=True) for k, v in make_batch(
                train, batches[index], pad_id, packing=spec.packing, capacity=spec.max_length).items()}
            with autocast(device, precision):
                summed = summed_token_loss(model, batch)
            scaler.scale(summed / group_tokens).backward()
            window["loss"] += float(summed.detach())
            trained_here = sum(train[i].trained_tokens for i in batches[index])
            tokens_here = sum(len(train[i]) for i in batches[index])
            window["trained"] += trained_here
            window["tokens"] += tokens_here
            attempt_trained += trained_here
            attempt_tokens += tokens_here
            state["trained_tokens"] += trained_here
            state["examples_seen"] += len(batches[index])
            last_in_epoch = index == len(batches) - 1
            if (index + 1) % accumulation and not last_in_epoch:
                continue
            scaler.unscale_(optimizer)
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            scaler.step(optimizer)
            scaler.update()
            scheduler.step()
            optimizer.zero_grad(set_to_none=True)
            state["global_step"] += 1
            step = state["global_step"]
            fractional_epoch = epoch + (index + 1) / len(batches)
            reporter.progress(step=step, total_steps=total_steps, epoch=fractional_epoch)
            if step % LOG_EVERY_STEPS == 0 or last_in_epoch:  # a short epoch still shows its loss and tokens/s
                seconds = max(1e-9, time.perf_counter() - window["since"])
                reporter.metrics(step=step, epoch=fractional_epoch, values={
                    "train_loss": window["loss"] / max(1, window["trained"]),
                    "learning_rate": scheduler.get_last_lr()[0],
                    "tokens_per_second": window["tokens"] / seconds,
                    "trained_tokens_per_second": window["trained"] / seconds,
                    "trained_tokens": float(state["trained_tokens"])})
                window = {"loss": 0.0, "trained": 0, "tokens": 0, "since": time.perf_counter()}
            if step % spec.checkpoint_every_steps == 0 and not last_in_epoch:
                checkpoint(index + 1, epoch)
            stop_reason = reporter.should_stop()
            if stop_reason:
                if stop_reason != "lease lost":  # the checkpoints belong to the new owner now
                    checkpoint(index + 1, epoch)
                reporter.event(level="warning", message=f"Stopped at step {step}: {stop_reason}.")
                break
        if stop_reason:
            break
        metrics = validation_loss(model, validation, batch_size=spec.eval_batch_size, pad_token_id=pad_id,
                                  device=device, precision=precision)
        state["history"].append({"epoch": epoch + 1, "step": state["global_step"], **metrics})
        reporter.metrics(step=state["global_step"], epoch=float(epoch + 1), values=metrics)
        score = metrics.get("eval_loss")
        best_so_far = state["best_metric"]
        if score is None or best_so_far is None or score < best_so_far - MIN_RELATIVE_IMPROVEMENT * abs(best_so_far):
            state.update(best_metric=score, best_step=state["global_step"], bad_epochs=0)
            if reporter.confirm_lease():
                path = checkpoints.save_best(spec.checkpoint_dir, model=model, metrics=metrics, step=state["global_step"])
                reporter.checkpoint_saved(step=state["global_step"], path=path, metrics=metrics, is_best=True)
        else:
            state["bad_epochs"] += 1
        epoch += 1
        state["batch_in_epoch"] = 0
        stopping_early = bool(spec.early_stopping_patience and state["bad_epochs"] >= spec.early_stopping_patience)
        # As finetune.py: no epoch-end checkpoint after the last epoch or right after a periodic one.
        recent = state["global_step"] - last_checkpoint_step < spec.checkpoint_every_steps // 2
        if epoch < spec.epochs and not stopping_early and not recent:
            checkpoint(0, epoch)
        if stopping_early and epoch < spec.epochs:
            reporter.event(level="info", message=f"Early stop after epoch {epoch}: the validation loss did not improve "
                                                 f"for {state['bad_epochs']} epoch(s).")
            break

    train_seconds = time.perf_counter() - started
    data = {"train": train_report.summary(), "validation": validation_report.summary()}
    best = checkpoints.load_best(spec.checkpoint_dir, model, device)
    generation = None
    if best is not None and stop_reason is None and prompts:
        replies = generate(prompts)
        generation = _generation_report(prompts, state["base_generations"] or [""] * len(prompts), replies, max_new_tokens)
        reporter.metrics(step=state["global_step"], epoch=float(epoch), values={
            **generation["finetuned"], **{f"base_{k}": v for k, v in generation["base"].items()}})
    test_metrics = None
    if best is not None and stop_reason is None and test_conversations:
        test_metrics = score_test_set(model, tokenizer, encoder, test_conversations, spec=spec, stop_ids=stop_ids,
                                      pad_token_id=pad_id, device=device, precision=precision)
        data["test"] = test_metrics.pop("encoding")
        reporter.event(level="info", message=_test_message(test_metrics))
    if best is not None and stop_reason != "lease lost":
        export(spec, model, tokenizer, best, state, reporter, precision=precision, device=device, data=data,
               generation=generation, stop_ids=stop_ids, pad_token_id=pad_id, test_metrics=test_metrics)
    return ChatFineTuneResult(
        status="stopped" if stop_reason else "succeeded", stop_reason=stop_reason, global_step=state["global_step"],
        total_steps=total_steps, best_metrics=best["metrics"] if best else None, history=state["history"],
        generation=_with_shown_examples(generation) if generation else None,
        train_examples_seen=state["examples_seen"], train_seconds=train_seconds, train_tokens=attempt_trained,
        input_tokens=attempt_tokens, device=device.type, precision=precision, data=data, test_metrics=test_metrics)


def score_test_set(model, tokenizer, encoder, conversations: list[list[dict]], *, spec: ChatFineTuneSpec,
                   stop_ids: list[int], pad_token_id: int, device, precision: str) -> dict:
    """The delivered model on every test conversation, once: loss and perplexity on the trained tokens, and the
    greedy reply to each last assistant message scored by exact match and token F1 (what the job page reports
    as the test score; the validation split chose the epoch, so its figures are a selection score)."""
    encoded = encode_conversations(conversations, encoder)
    out = validation_loss(model, encoded.examples, batch_size=spec.eval_batch_size, pad_token_id=pad_token_id,
                          device=device, precision=precision)
    prompts = generation_prompts(conversations, encoder, len(conversations))
    if prompts:
        max_new_tokens = max_new_tokens_for(prompts, tokenizer, spec.generation_max_new_tokens)
        replies = generate_replies(model, tokenizer, prompts, max_new_tokens=max_new_tokens, stop_ids=stop_ids,
                                   pad_token_id=pad_token_id, device=device, precision=precision,
                                   batch_size=spec.eval_batch_size)
        out.update(score_replies(replies, prompts))
    return {**out, "conversations": len(conversations), "replies_scored": len(prompts),
            "encoding": encoded.summary()}


def _test_message(metrics: dict) -> str:
    parts = [f"Test set ({metrics['conversations']} conversations, scored once by the delivered model):"]
    if "eval_loss" in metrics:
        parts.append(f"loss {metrics['eval_loss']:.4f}, perplexity {metrics['perplexity']:.2f}")
    if "exact_match" in metrics:
        parts.append(f"exact match {metrics['exact_match']:.4f}, token-F1 {metrics['token_f1']:.4f} "
                     f"over {metrics['replies_scored']} replies")
    return " ".join(parts[:1]) + " " + "; ".join(parts[1:]) + "."


def _report_encoding(reporter: Reporter, split: str, report: EncodingReport) -> None:
    if report.skipped:
        reasons = ", ".join(f"{count} {reason}" for reason, count in sorted(report.skipped.items()))
        reporter.event(level="warning", message=f"{split}: {sum(report.skipped.values())} conversation(s) skipped ({reasons}).")
    if report.truncated:
        reporter.event(level="info", message=f"{split}: {report.truncated} conversation(s) longer than max_length kept their start.")


def _generation_report(prompts: list[dict], base: list[str], finetuned: list[str], max_new_tokens: int) -> dict:
    examples = [{"index": p["index"], "prompt": p["prompt"], "reference": p["reference"], "base": b, "generated": g,
                 "exact_match": exact_match(g, p["reference"]), "token_f1": token_f1(g, p["reference"]),
                 "base_exact_match": exact_match(b, p["reference"]), "base_token_f1": token_f1(b, p["reference"])}
                for p, b, g in zip(prompts, base, finetuned)]
    return {"prompts": len(prompts), "max_new_tokens": max_new_tokens, "decoding": "greedy",
            "base": score_replies(base, prompts), "finetuned": score_replies(finetuned, prompts), "examples": examples}


SHOWN_EXAMPLES = 10  # the job page's side-by-side table; generations.json has every one
SHOWN_CHARACTERS = 1000


def _with_shown_examples(generation: dict) -> dict:
    """The generation report for the job's result: the first SHOWN_EXAMPLES prompts side by side (each text cut at
    SHOWN_CHARACTERS, so a long conversation cannot swell the job row), the scores over every prompt."""
    def cut(text: str) -> str:
        return text if len(text) <= SHOWN_CHARACTERS else text[:SHOWN_CHARACTERS] + "…"

    shown = [{**example, "prompt": [{**m, "content": cut(m.get("content") or "")} for m in example["prompt"]],
              **{k: cut(example[k]) for k in ("reference", "base", "generated")}}
             for example in generation.get("examples", [])[:SHOWN_EXAMPLES]]
    return {**generation, "examples": shown}


def _saved_dtype(spec: ChatFineTuneSpec) -> torch.dtype:
    """The base checkpoint's dtype (a bf16 base is exported in bf16), else float32."""
    from transformers import AutoConfig

    dtype = getattr(AutoConfig.from_pretrained(spec.base_model_path), "dtype", None)
    if isinstance(dtype, str):
        dtype = getattr(torch, dtype, None)
    return dtype if dtype in (torch.bfloat16, torch.float16) else torch.float32


def _generation_config(spec: ChatFineTuneSpec, model, stop_ids: list[int], pad_token_id: int):
    """The base's generation config, stopping at the end-of-turn token(s) too."""
    from transformers import GenerationConfig

    try:
        config = GenerationConfig.from_pretrained(spec.base_model_path)
    except OSError:
        config = GenerationConfig.from_model_config(model.config)
    base_eos = config.eos_token_id if isinstance(config.eos_token_id, list) else [config.eos_token_id]
    eos = sorted({*[e for e in base_eos if e is not None], *stop_ids})
    config.eos_token_id = eos[0] if len(eos) == 1 else eos
    config.pad_token_id = pad_token_id
    return config


def export(spec: ChatFineTuneSpec, model, tokenizer, best: dict, state: dict, reporter: Reporter, *, precision: str,
           device, data: dict, generation: dict | None, stop_ids: list[int], pad_token_id: int,
           test_metrics: dict | None = None) -> None:
    os.makedirs(spec.output_dir, exist_ok=True)
    model_dir = os.path.join(spec.output_dir, "model")
    shutil.rmtree(model_dir, ignore_errors=True)
    generation_config = _generation_config(spec, causal_lm(model), stop_ids, pad_token_id)
    report = {"best": best, "history": state["history"], "method": spec.method, "precision": precision,
              "device": str(device.type), "data": data,
              "trained_tokens": state["trained_tokens"], "conversations_seen": state["examples_seen"],
              "generation": {k: v for k, v in generation.items() if k != "examples"} if generation else None,
              "test": test_metrics,
              "hyperparameters": chat_card.method_hyperparameters(spec.to_dict(), spec.method),
              "hyperparameters_set_by_user": (spec.card or {}).get("user_set")}
    if spec.method == "lora":
        adapter_dir = os.path.join(spec.output_dir, "adapter")
        shutil.rmtree(adapter_dir, ignore_errors=True)
        model.save_pretrained(adapter_dir, safe_serialization=True)
        # The adapter names its base by its public id, never by a path on this server (as finetune.export).
        adapter_config = os.path.join(adapter_dir, "adapter_config.json")
        with open(adapter_config) as fh:
            settings = json.load(fh)
        settings["base_model_name_or_path"] = base_model_public_name(spec)
        with open(adapter_config, "w") as fh:
            json.dump(settings, fh, indent=2, sort_keys=True)
        tokenizer.save_pretrained(adapter_dir)
        generation_config.save_pretrained(adapter_dir)
        _write_card(adapter_dir, chat_card.chat_card(spec, report, archive="adapter.zip", files=archive_files(adapter_dir)))
        reporter.artifact(name="adapter.zip", path=zip_folder(adapter_dir, os.path.join(spec.output_dir, "adapter.zip")),
                          kind="adapter")
        model = model.merge_and_unload()
    model = model.to("cpu").to(_saved_dtype(spec))
    model.config.use_cache = True
    model.generation_config = generation_config
    model.save_pretrained(model_dir, safe_serialization=True)
    tokenizer.save_pretrained(model_dir)
    with open(os.path.join(spec.output_dir, "eval_report.json"), "w") as fh:
        json.dump(report, fh, indent=2)
    card = chat_card.chat_card(spec, report, archive="model.zip", files=archive_files(model_dir))
    _write_card(model_dir, card)
    _write_card(spec.output_dir, card)
    reporter.artifact(name="model.zip", path=zip_folder(model_dir, os.path.join(spec.output_dir, "model.zip")), kind="model")
    reporter.artifact(name="eval_report.json", path=os.path.join(spec.output_dir, "eval_report.json"), kind="report")
    if generation:
        path = os.path.join(spec.output_dir, "generations.json")
        with open(path, "w") as fh:
            json.dump(generation["examples"], fh, indent=2, ensure_ascii=False)
        reporter.artifact(name="generations.json", path=path, kind="report")
    reporter.artifact(name="README.md", path=os.path.join(spec.output_dir, "README.md"), kind="model_card")


def _write_card(folder: str, card: str) -> None:
    with open(os.path.join(folder, "README.md"), "w") as fh:
        fh.write(card)
