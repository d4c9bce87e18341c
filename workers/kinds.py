"""One declaration per job kind (in the manner of transformers' TrainingArguments):
each option's type, default, bounds, help, choices and the methods it applies
to, once. Django-free, so both sides read it:

- the platform: the API's checks and messages (jobs/hyperparameters.py,
  jobs/submission.py), the OpenAPI schema (jobs/serializers.py), the dashboard's
  launch and compress forms, 'auto' resolution (the defaults below; fields
  marked `auto` are computed from the data instead);
- the worker: the specs (workers/spec.py FineTuneSpec inherits the fine-tune
  hyperparameters; CompressionSpec takes its defaults from here) rebuilt
  strictly with `strict()`, so an unknown key is an error, never dropped.

Metadata of every field: help, type (int | float | bool | str | list), min, max,
choices, methods (None: every method), auto (the 'auto' value is computed from
the data, not the default), required (at submission), label (the form's),
choice_labels (the form's words for each choice), refers_to ("base_model": the
value names a catalog model), suggested (what the form pre-fills where the
option has no default). A kind's `title` says what it does, for forms."""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

PRUNE_METHODS = ("magnitude", "heads", "neurons", "layers")
LORA = ("lora",)


def option(default, *, help: str, type: type, min=None, max=None, choices=None, methods=None, auto: bool = False,
           required: bool = False, label: str | None = None, choice_labels: dict | None = None,
           refers_to: str | None = None, suggested=None):
    metadata = {"help": help, "type": type, "min": min, "max": max, "choices": choices, "methods": methods,
                "auto": auto, "required": required, "label": label, "choice_labels": choice_labels or {},
                "refers_to": refers_to, "suggested": suggested}
    if isinstance(default, list):
        return field(default_factory=lambda: list(default), metadata=metadata)
    return field(default=default, metadata=metadata)


@dataclass
class FineTuneHyperparameters:
    """Submitted under `hyperparameters`; each value may be "auto" (or absent):
    the default below, or for fields marked auto a value computed from the data
    and the model (jobs/hyperparameters.resolve)."""

    epochs: int = option(3, type=int, min=1, max=50, auto=True, help=(
        "Passes over the train split. auto: 8 for few examples per label, else 3 (2 from 50,000 rows); a "
        "distillation's student twice that, at most 15"))
    learning_rate: float = option(5e-5, type=float, min=1e-7, max=1e-1, auto=True, help=(
        "Peak learning rate. auto: by model size and method; a distillation's student 1.5 times that"))
    batch_size: int = option(32, type=int, min=1, max=512, auto=True, help=(
        "Examples per batch (an optimizer step takes gradient_accumulation_steps of them). auto: 32, or 16 when 32 "
        "would leave fewer than 1,200 optimizer steps"))
    gradient_accumulation_steps: int = option(1, type=int, min=1, max=64, help="Batches summed per optimizer step")
    max_length: int = option(128, type=int, min=8, max=512, auto=True, label="Max length (tokens)", help=(
        "Tokens per example. auto: the dataset's p95 length, within the model's limit"))
    warmup_ratio: float = option(0.06, type=float, min=0.0, max=0.5, help="Share of the steps spent warming up")
    weight_decay: float = option(0.01, type=float, min=0.0, max=1.0, help="AdamW weight decay")
    lora_r: int = option(8, type=int, min=1, max=256, methods=LORA, label="LoRA rank", help="LoRA rank")
    lora_alpha: int = option(16, type=int, min=1, max=1024, methods=LORA, help="LoRA scaling (alpha)")
    lora_dropout: float = option(0.1, type=float, min=0.0, max=0.9, methods=LORA, help="Dropout on the LoRA layers")
    lora_targets: list[str] = option(["query", "value"], type=list, methods=LORA, auto=True, help=(
        'Modules LoRA adapts: a non-empty list of module names, e.g. ["query", "value"]. auto: every Linear layer '
        "of the encoder's blocks (BERT: query, key, value, dense); the head is trained in full"))
    early_stopping_patience: int | None = option(2, type=int, min=0, max=20, help=(
        "Evaluations without improvement before stopping"))
    seed: int = option(13, type=int, min=0, max=2**31 - 1, help="Random seed (shuffling, initialization)")
    refit: bool = option(False, type=bool, auto=True, help=(
        "After validation has chosen the number of epochs, train a fresh model on train + validation for that many "
        "epochs and deliver it (validation figures then describe the selection run). auto: on when the validation "
        "split was carved from the training file, off when it was uploaded"))
    lr_scheduler: str = option("linear", type=str, choices=("linear", "cosine", "constant_with_warmup"), help=(
        "Learning-rate decay after the warm-up"))
    label_smoothing: float = option(0.0, type=float, min=0.0, max=0.5, help=(
        "Share of each target spread over the other labels (0 = plain cross-entropy)"))
    layer_lr_decay: float = option(1.0, type=float, min=0.5, max=1.0, help=(
        "Each block below the head trains at this factor of the one above it (1 = one rate for all)"))
    head_lr_multiplier: float = option(1.0, type=float, min=1.0, max=100.0, label="Head learning-rate multiplier", help=(
        "The freshly initialized head (classifier, pooler) trains at this multiple of the learning rate (1 = one "
        "rate for all)"))
    average_last_epochs: int = option(1, type=int, min=1, max=5, help=(
        "Deliver the mean of the weights at the ends of the last N epochs (1 = the weights as they are)"))
    freeze_embeddings: bool = option(False, type=bool, help=(
        "Keep the word embeddings as the base model has them (no gradient, no optimizer state for them; "
        "LoRA always does)"))


@dataclass
class CompressionOptions:
    """What every compression kind takes (top level of the request)."""

    max_accuracy_drop: float = option(1.0, type=float, min=0, max=100, help=(
        "Compression: the largest acceptable accuracy drop, in points"))


@dataclass
class QuantizeOptions(CompressionOptions):
    title = "Quantize to int8 (PyTorch and ONNX)"


@dataclass
class PruneOptions(CompressionOptions):
    title = "Prune"

    prune_method: str = option("magnitude", type=str, choices=PRUNE_METHODS, label="What", choice_labels={
        "magnitude": "single weights (global magnitude)", "heads": "attention heads", "neurons": "feed-forward neurons",
        "layers": "whole layers"}, help=(
        "prune: magnitude (unstructured, default), heads, neurons (feed-forward) or layers"))
    sparsity: float | None = option(None, type=float, min=0.05, max=0.95, auto=True, required=True, suggested=0.3,
                                    label="Share to remove", help=(
        'prune: the share to remove (0.05–0.95), or "auto" for the highest within the accuracy guard '
        "(bisection; the curve is returned)"))
    recovery_epochs: int = option(0, type=int, min=0, max=20, help=(
        "prune: epochs of recovery fine-tuning after pruning (0–20, default 0)"))


@dataclass
class DistillOptions(CompressionOptions):
    title = "Distill into a smaller student"

    student_layers: int | None = option(None, type=int, min=1, max=47, help=(
        "distill: layers of the student cut from the teacher (default: half, every other layer)"))
    student_base_model: str | None = option(None, type=str, refers_to="base_model", label="or a catalog student",
                                            help="distill: a catalog model as the student instead")
    temperature: float = option(2.0, type=float, min=0.5, max=20.0, help="distill: softmax temperature (default 2.0)")
    alpha: float = option(0.5, type=float, min=0.0, max=1.0, help=(
        "distill: weight of the teacher's soft targets vs the labels (default 0.5)"))


@dataclass
class ChatFineTuneHyperparameters:
    """Supervised fine-tuning of a chat model (causal LM) on conversations: `hyperparameters` of a
    chat_finetune job. Each value may be "auto" (or absent): the default below, or for fields marked auto
    a value computed from the data and the model (workers/chat/hyperparameters.resolve_chat_hyperparameters)."""

    epochs: int = option(3, type=int, min=1, max=50, auto=True, help=(
        "Passes over the train split. auto: 3, more for small sets (at least 100 conversations trained in all, "
        "at most 25 passes), fewer for large ones (at most about 25,000)"))
    learning_rate: float = option(2e-4, type=float, min=1e-7, max=1e-1, auto=True, help=(
        "Peak learning rate. auto: by model size and method (LoRA 2e-4 up to 1B parameters, 1e-4 above; "
        "full 5e-5 up to 500M, 2e-5 up to 3B, 1e-5 above)"))
    batch_size: int = option(8, type=int, min=1, max=256, help="Conversations per batch (before accumulation)")
    gradient_accumulation_steps: int = option(1, type=int, min=1, max=64, help="Batches summed per optimizer step")
    max_length: int = option(1024, type=int, min=16, max=32768, auto=True, label="Max length (tokens)", help=(
        "Tokens per conversation with the chat template; a longer one keeps its start. auto: the longest "
        "conversation (rounded up to a multiple of 8), within the model's context and 4,096"))
    warmup_ratio: float = option(0.03, type=float, min=0.0, max=0.5, help="Share of the steps spent warming up")
    weight_decay: float = option(0.0, type=float, min=0.0, max=1.0, help="AdamW weight decay")
    lora_r: int = option(16, type=int, min=1, max=256, methods=LORA, label="LoRA rank", help="LoRA rank")
    lora_alpha: int = option(32, type=int, min=1, max=1024, methods=LORA, help="LoRA scaling (alpha)")
    lora_dropout: float = option(0.05, type=float, min=0.0, max=0.9, methods=LORA, help="Dropout on the LoRA layers")
    lora_targets: list[str] = option(["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"],
                                     type=list, methods=LORA, auto=True, help=(
                                         'Modules LoRA adapts: a non-empty list of module names. auto: per '
                                         'architecture, attention and MLP projections (LLaMA-style: ["q_proj", "k_proj", '
                                         '"v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"])'))
    early_stopping_patience: int | None = option(2, type=int, min=0, max=20, help=(
        "Evaluations (validation loss) without improvement before stopping"))
    seed: int = option(13, type=int, min=0, max=2**31 - 1, help="Random seed (shuffling, initialization)")


@dataclass
class PredictOptions:
    """A predict job: one model (`model`, a reference the platform resolves) over a file of inputs;
    these are its options (top level of the request, as compression's)."""

    title = "Batch predictions"

    batch_size: int = option(32, type=int, min=1, max=512, help="Inputs per forward pass")
    max_new_tokens: int = option(128, type=int, min=1, max=2048, help=(
        "Chat models: the longest reply, in tokens (greedy decoding)"))
    chunk_rows: int = option(256, type=int, min=1, max=100_000, help=(
        "Rows per output chunk: a lost worker's successor resumes after the last complete chunk"))


@dataclass
class EvaluateOptions:
    """An evaluate job (the comparison): several models of the organization scored on one labelled
    dataset version, on one worker class; these are its options."""

    title = "Compare models"

    accuracy_tolerance: float = option(1.0, type=float, min=0.0, max=100.0, help=(
        "The cheapest model within this many points of the most accurate one is marked"))
    latency_samples: int = option(50, type=int, min=5, max=1000, help="Single-input calls timed per model (p50/p95)")
    max_new_tokens: int = option(64, type=int, min=1, max=2048, help="Chat models: the longest reply, in tokens")


# kind → its declaration (fine-tune, chat fine-tune: the hyperparameters; compression: the top-level options).
KINDS: dict[str, type] = {"finetune": FineTuneHyperparameters, "quantize": QuantizeOptions, "prune": PruneOptions,
                          "distill": DistillOptions, "chat_finetune": ChatFineTuneHyperparameters,
                          "predict": PredictOptions, "evaluate": EvaluateOptions}
COMPRESSION_KINDS = ("quantize", "prune", "distill")


def options_of(declaration: type) -> dict[str, dataclasses.Field]:
    """name → Field, in declaration order (read live: a changed bound is seen at once)."""
    return {f.name: f for f in dataclasses.fields(declaration)}


def default_of(declaration: type, name: str):
    f = options_of(declaration)[name]
    return f.default_factory() if f.default is dataclasses.MISSING else f.default


def defaults(declaration: type) -> dict:
    return {name: default_of(declaration, name) for name in options_of(declaration)}


def compression_option_names() -> list[str]:
    """Every compression kind's options but the common ones, in order, once each."""
    names: dict[str, None] = {}
    for kind in COMPRESSION_KINDS:
        names.update((n, None) for n in options_of(KINDS[kind]) if n not in options_of(CompressionOptions))
    return list(names)


def compression_option(name: str) -> dataclasses.Field:
    """A compression option's declaration (the same in every kind that takes it)."""
    return options_of(KINDS[kinds_taking(name)[0]])[name]


def kinds_taking(name: str) -> tuple[str, ...]:
    return tuple(k for k in COMPRESSION_KINDS if name in options_of(KINDS[k]))


def strict(cls: type, values: dict, **fixed):
    """`cls(**fixed, **values)`, refusing (ValueError naming them) keys `cls`
    does not declare and keys that would override `fixed`: a stored spec is
    rebuilt exactly, never filtered."""
    accepted = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(values) - accepted)
    if unknown:
        raise ValueError(f"{cls.__name__}: unknown key(s) {', '.join(unknown)}; accepted: {', '.join(sorted(accepted))}")
    clash = sorted(set(values) & set(fixed))
    if clash:
        raise ValueError(f"{cls.__name__}: {', '.join(clash)} is set by the worker, not the stored spec")
    return cls(**fixed, **values)
