"""Submitted hyperparameters: each may be 'auto'; everything is checked and
resolved to concrete values before a job is queued."""
from __future__ import annotations

import math

from core.errors import ApplicationError

from workers.kinds import FineTuneHyperparameters, defaults, options_of

DECLARATION = FineTuneHyperparameters  # types, bounds, help and defaults: workers/kinds.py


# LoRA on every Linear layer of an encoder block, by the config's model_type (suffixes, as peft
# matches them; the worker keeps the head — pooler, classifier — out of LoRA and trains it in full).
LORA_ENCODER_LINEARS = {
    **dict.fromkeys(("bert", "roberta", "xlm-roberta", "camembert", "electra", "ernie"), ["query", "key", "value", "dense"]),
    "distilbert": ["q_lin", "k_lin", "v_lin", "out_lin", "lin1", "lin2"],
    "deberta-v2": ["query_proj", "key_proj", "value_proj", "dense"],
}


# Small data is short of optimizer steps more than of examples per step: on 2,430 BANKING77 rows
# (8 epochs), batch 16 scored +1.4 points on the test split and batch 64 -3.0 against 32
# (bench/finetune_options.py, docs/jobs.md). Below this many steps at 32, 'auto' halves the batch.
MIN_AUTO_STEPS = 1_200


def batch_size_for(rows: int, epochs: int, accumulation: int = 1) -> int:
    steps_at_32 = epochs * math.ceil(math.ceil(max(1, rows) / 32) / accumulation)
    return 32 if steps_at_32 >= MIN_AUTO_STEPS else 16


def lora_only(declaration: type = DECLARATION) -> set[str]:
    return {name for name, f in options_of(declaration).items() if f.metadata["methods"] == ("lora",)}


def _invalid(name: str, message: str) -> ApplicationError:
    return ApplicationError(f"hyperparameters.{name}: {message}", code="invalid", fields={f"hyperparameters.{name}": [message]})


def _shown(value) -> str:
    if isinstance(value, int) and value.bit_length() > 64:  # str() of a 5,000-digit int raises
        return f"an integer of about {int(value.bit_length() * 0.30103)} digits"
    return repr(value)


def number_problem(value, *, kind: type, low, high, hint: str = "") -> str | None:
    """What is wrong with `value` as a `kind` (int or float) within [low, high];
    None if nothing. Safe for any input: bools, strings, inf, NaN, 5,000-digit
    integers (compared exactly, never converted on the way)."""
    wanted = "an integer" if kind is int else "a number"
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return f"must be {wanted}{hint}"
    if isinstance(value, float) and not math.isfinite(value):
        return f"must be a finite number{hint}"
    if kind is int and isinstance(value, float) and not value.is_integer():
        return f"must be {wanted}{hint}"
    if not low <= value <= high:
        return f"must be between {low} and {high} (got {_shown(value)})"
    return None


def check(raw: dict | None, *, declaration: type = DECLARATION) -> dict:
    """Type- and range-check against `declaration` (a kind's hyperparameters,
    workers/kinds.py); 'auto' (or absence) stays 'auto'."""
    if raw is None:
        return {}
    if not isinstance(raw, dict):
        raise _invalid("*", "hyperparameters must be an object")
    out = {}
    declared = options_of(declaration)
    for name, value in raw.items():
        if name not in declared:
            raise _invalid(name, f"unknown hyperparameter; known: {', '.join(sorted(declared))}")
        if value == "auto" or value is None:
            out[name] = "auto"
            continue
        meta = declared[name].metadata
        if meta["type"] is bool:
            if not isinstance(value, bool):
                raise _invalid(name, 'must be true, false or "auto"')
            out[name] = value
            continue
        if meta["type"] is str:
            if value not in meta["choices"]:
                raise _invalid(name, f"must be one of {', '.join(meta['choices'])} or \"auto\" (got {_shown(value)[:60]})")
            out[name] = value
            continue
        if meta["type"] is list:
            if not isinstance(value, list) or not value or not all(isinstance(v, str) and v.isidentifier() for v in value):
                raise _invalid(name, "a non-empty list of module names, e.g. [\"query\", \"value\"]")
            out[name] = value
            continue
        kind = meta["type"]
        problem = number_problem(value, kind=kind, low=meta["min"], high=meta["max"], hint=' or "auto"')
        if problem:
            raise _invalid(name, problem)
        out[name] = kind(value)
    return out


# A student learns what a fine-tune learns and then some (a teacher's soft targets, layers it lost): on
# BANKING77 a 3-layer student took 15 epochs at lr 3e-4 to come within 0.6 points of its teacher
# (bench/compression_banking77.py) and 8 at 2e-4 left it short (bench/distill_auto.py, docs/compression.md).
STUDENT_EPOCHS_FACTOR, STUDENT_MAX_EPOCHS, STUDENT_LR_FACTOR = 2, 15, 1.5


def resolve(requested: dict, *, method: str, version, base_model, validation_supplied: bool = False,
            student: bool = False) -> dict:
    """Concrete values for every hyperparameter, from the data where 'auto'. `validation_supplied`: the
    job validates on a set of its own, so the version is trained on whole and nothing is refit.
    `student`: the training of a distillation's student (more epochs at a larger step)."""
    rows = version.train_count + (version.validation_count if validation_supplied else 0)
    labels = max(1, version.label_count)
    params = base_model.parameter_count or 110_000_000
    lengths = version.report.get("lengths", {})
    p95 = lengths.get("p95") if lengths.get("unit") == "tokens" else None
    # The declared defaults, then what is computed from the data for the fields declared `auto`.
    auto = defaults(DECLARATION)
    auto.update({
        # Few examples per label need more passes (BANKING77, 117 per label: 8 epochs
        # reached 93.7% where 3 reached 82.5%); early stopping ends flat runs sooner.
        "epochs": 8 if rows < 2_000 or rows / labels < 500 else 3 if rows < 50_000 else 2,
        # Small encoders take larger steps (MiniLM-L6 on BANKING77: see docs/jobs.md).
        "learning_rate": (1e-3 if params < 50_000_000 else 3e-4) if method == "lora"
        else 2e-4 if params < 50_000_000 else 5e-5 if params < 200_000_000 else 2e-5,
        "lora_targets": LORA_ENCODER_LINEARS.get(base_model.architecture, defaults(DECLARATION)["lora_targets"]),
        # A validation split the platform carved is training data the user gave: after it has
        # chosen the epochs, fit on it too. One the user uploaded stays theirs to judge by.
        "refit": not validation_supplied and (version.report or {}).get("split", {}).get("source") == "carved",
        # Enough for 95% of rows without truncation, on a multiple of 8.
        "max_length": min(base_model.default_max_length, max(16, ((int(p95 * 1.25) + 7) // 8) * 8)) if p95 else base_model.default_max_length,
    })
    if student:
        auto["epochs"] = min(STUDENT_MAX_EPOCHS, auto["epochs"] * STUDENT_EPOCHS_FACTOR)
        auto["learning_rate"] = float(f"{auto['learning_rate'] * STUDENT_LR_FACTOR:.3g}")  # 3e-4, not 3.0000000000000003e-4
    # The catalog's per-model defaults come before the heuristics above.
    auto.update({k: v for k, v in (base_model.default_hyperparameters or {}).items() if k in auto})
    resolved = {name: (auto[name] if requested.get(name, "auto") == "auto" else requested[name]) for name in auto}
    if requested.get("batch_size", "auto") == "auto" and "batch_size" not in (base_model.default_hyperparameters or {}):
        resolved["batch_size"] = batch_size_for(rows, resolved["epochs"], resolved["gradient_accumulation_steps"])
    for name, f in options_of(DECLARATION).items():  # only the method's own settings
        if f.metadata["methods"] and method not in f.metadata["methods"]:
            resolved.pop(name)
    return resolved
