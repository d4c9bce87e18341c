"""Submitted hyperparameters: each may be 'auto'; everything is checked and
resolved to concrete values before a job is queued."""
from __future__ import annotations

import math

from core.errors import ApplicationError

from workers.kinds import FineTuneHyperparameters, defaults, options_of

DECLARATION = FineTuneHyperparameters  # types, bounds, help and defaults: workers/kinds.py


def lora_only() -> set[str]:
    return {name for name, f in options_of(DECLARATION).items() if f.metadata["methods"] == ("lora",)}


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


def check(raw: dict | None) -> dict:
    """Type- and range-check; 'auto' (or absence) stays 'auto'."""
    if raw is None:
        return {}
    if not isinstance(raw, dict):
        raise _invalid("*", "hyperparameters must be an object")
    out = {}
    declared = options_of(DECLARATION)
    for name, value in raw.items():
        if name not in declared:
            raise _invalid(name, f"unknown hyperparameter; known: {', '.join(sorted(declared))}")
        if value == "auto" or value is None:
            out[name] = "auto"
            continue
        meta = declared[name].metadata
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


def resolve(requested: dict, *, method: str, version, base_model) -> dict:
    """Concrete values for every hyperparameter, from the data where 'auto'."""
    rows = version.train_count
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
        "learning_rate": (5e-4 if params < 50_000_000 else 3e-4) if method == "lora"
        else 2e-4 if params < 50_000_000 else 5e-5 if params < 200_000_000 else 2e-5,
        # Enough for 95% of rows without truncation, on a multiple of 8.
        "max_length": min(base_model.default_max_length, max(16, ((int(p95 * 1.25) + 7) // 8) * 8)) if p95 else base_model.default_max_length,
    })
    # The catalog's per-model defaults come before the heuristics above.
    auto.update({k: v for k, v in (base_model.default_hyperparameters or {}).items() if k in auto})
    resolved = {name: (auto[name] if requested.get(name, "auto") == "auto" else requested[name]) for name in auto}
    if method != "lora":
        for name in lora_only():
            resolved.pop(name)
    return resolved
