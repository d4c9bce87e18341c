"""What a predict or chat request may carry, checked before anything is written or sent: each problem a 400
naming its field (`inputs[3]`, `messages[0].role`, `max_new_tokens`)."""
from __future__ import annotations

import math

from django.conf import settings

from core.errors import field_error

ROLES = ("system", "user", "assistant")
MAX_MESSAGES = 64
MAX_NEW_TOKENS = 1024


def _text(value, *, field: str) -> str:
    limit = settings.LATHE_INFERENCE_MAX_CHARS
    if not isinstance(value, str):
        raise field_error(field, f"{field} must be a string.")
    if not value.strip():
        raise field_error(field, f"{field} is empty.")
    if "\x00" in value:
        raise field_error(field, f"{field} contains a NUL character.")
    if len(value) > limit:
        raise field_error(field, f"{field} is {len(value):,} characters; at most {limit:,} are taken.")
    return value


def unknown_keys(body: dict, allowed: set[str], *, field: str | None = None) -> None:
    unknown = sorted(str(k)[:60] for k in set(body) - allowed)
    if unknown:
        name = unknown[0] if field is None else f"{field}.{unknown[0]}"
        raise field_error(name, f"Unknown field(s): {', '.join(unknown)}; this takes {', '.join(sorted(allowed))}.",
                          code="unknown_field")


def classifier_inputs(value, *, task: str, field: str = "inputs") -> list[dict]:
    """A list of strings (or {"text_a", "text_b"} objects for a pair classifier), 1 to LATHE_INFERENCE_MAX_INPUTS."""
    limit = settings.LATHE_INFERENCE_MAX_INPUTS
    if not isinstance(value, list) or not value:
        raise field_error(field, f"{field} must be a non-empty list of texts to classify.")
    if len(value) > limit:
        raise field_error(field, f"{field} has {len(value)} items; at most {limit} a request (use a predict job for more).")
    out = []
    for i, item in enumerate(value):
        name = f"{field}[{i}]"
        if task == "text_pair_classification":
            if not isinstance(item, dict):
                raise field_error(name, f'{name} must be an object {{"text_a": …, "text_b": …}} (a pair classifier).')
            unknown_keys(item, {"text_a", "text_b"}, field=name)
            out.append({"text_a": _text(item.get("text_a"), field=f"{name}.text_a"),
                        "text_b": _text(item.get("text_b"), field=f"{name}.text_b")})
        else:
            if isinstance(item, dict):
                unknown_keys(item, {"text"}, field=name)
                item = item.get("text")
            out.append({"text": _text(item, field=name)})
    return out


def chat_messages(value, *, field: str = "messages") -> list[dict]:
    """OpenAI's messages, text only: role system/user/assistant (developer is read as system), content a string
    or a list of {"type": "text", "text"} parts; the last one from the user."""
    if not isinstance(value, list) or not value:
        raise field_error(field, f"{field} must be a non-empty list of {{role, content}} messages.")
    if len(value) > MAX_MESSAGES:
        raise field_error(field, f"{field} has {len(value)} messages; at most {MAX_MESSAGES}.")
    out, total = [], 0
    for i, message in enumerate(value):
        name = f"{field}[{i}]"
        if not isinstance(message, dict):
            raise field_error(name, f"{name} must be an object with role and content.")
        unknown_keys(message, {"role", "content", "name"}, field=name)
        role = message.get("role")
        if role == "developer":
            role = "system"
        if role not in ROLES:
            raise field_error(f"{name}.role", f"{name}.role must be one of {', '.join(ROLES)} (got {str(role)[:30]!r}).")
        content = message.get("content")
        if isinstance(content, list):
            parts = []
            for j, part in enumerate(content):
                if not isinstance(part, dict) or part.get("type") != "text" or not isinstance(part.get("text"), str):
                    raise field_error(f"{name}.content[{j}]", f"{name}.content[{j}]: only text parts "
                                                              '({"type": "text", "text": …}) are supported.')
                parts.append(part["text"])
            content = "\n".join(parts)
        content = _text(content, field=f"{name}.content")
        total += len(content)
        out.append({"role": role, "content": content})
    if total > 4 * settings.LATHE_INFERENCE_MAX_CHARS:
        raise field_error(field, f"{field} hold {total:,} characters; at most {4 * settings.LATHE_INFERENCE_MAX_CHARS:,}.")
    if out[-1]["role"] != "user":
        raise field_error(field, f"The last of {field} must be from the user (the model answers it).")
    return out


def integer(value, *, field: str, low: int, high: int, default: int | None = None) -> int | None:
    if value is None:
        return default
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise field_error(field, f"{field} must be a whole number from {low} to {high}.")
    return value


def number(value, *, field: str, low: float, high: float, default: float) -> float:
    if value is None:
        return default
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) \
            or not low <= value <= high:
        raise field_error(field, f"{field} must be a number from {low:g} to {high:g}.")
    return float(value)


def generation(*, max_new_tokens, temperature, top_p, seed, names: dict | None = None) -> dict:
    """The sampling options (greedy at temperature 0); `names` maps them to the caller's field names."""
    names = {"max_new_tokens": "max_new_tokens", "temperature": "temperature", "top_p": "top_p", "seed": "seed",
             **(names or {})}
    top = number(top_p, field=names["top_p"], low=0.0, high=1.0, default=1.0)
    if top <= 0:
        raise field_error(names["top_p"], f"{names['top_p']} must be above 0 and at most 1.")
    return {"max_new_tokens": integer(max_new_tokens, field=names["max_new_tokens"], low=1, high=MAX_NEW_TOKENS,
                                      default=128),
            "temperature": number(temperature, field=names["temperature"], low=0.0, high=2.0, default=0.0),
            "top_p": top, "seed": integer(seed, field=names["seed"], low=0, high=2**31 - 1)}
