"""Chat datasets: one conversation per JSONL line, in OpenAI's fine-tuning format.

    {"messages": [{"role": "system" | "user" | "assistant", "content": "...", "weight": 0 | 1}, ...]}
    {"prompt": "...", "completion": "..."}       (becomes a user and an assistant message)

`weight` is optional and only on assistant messages (0: not trained on). A line
may also carry "split": "train" | "validation". Normalized, every conversation is
stored as {"messages": [...]} with role, content and (only where given) weight:
the worker's input (workers/chat/).

Free of Django: the preflight (corpora/preflight.py) calls `normalize_conversation`
per line and `ChatTokenCounter` for the token statistics, with a tokenizer the
platform loads.
"""
from __future__ import annotations

import bisect
import hashlib
import json
import math
from dataclasses import dataclass, field

ROLES = ("system", "user", "assistant")
MESSAGE_KEYS = {"role", "content", "weight"}
LINE_KEYS = {"messages", "split"}
PROMPT_COMPLETION_KEYS = {"prompt", "completion", "split"}
# Tool calling (OpenAI's tools/functions) is refused with one clear message, wherever it appears.
TOOL_KEYS = ("tools", "tool_choice", "parallel_tool_calls", "functions", "function_call", "tool_calls", "tool_call_id")
TOOL_ROLES = ("tool", "function")
TOOLS_UNSUPPORTED = ("not supported yet: Lathe fine-tunes plain conversations (system, user and assistant text); "
                     "remove tool definitions, tool calls and tool messages")
# A conversation's messages are bounded: the trained spans come from renderings of its prefixes.
MAX_MESSAGES = 256
HISTOGRAM_BINS = 20
MAX_TEMPLATE_ERROR_EXAMPLES = 20
TOKENIZE_BATCH = 256  # conversations tokenized together (the fast tokenizer's batch path)

# The rejection reasons (counted by these words; each rejected line's example adds the detail).
NOT_CHAT = "no messages"
MESSAGES_NOT_LIST = "messages not a list"
EMPTY_CONVERSATION = "empty conversation"
TOO_MANY_MESSAGES = "too many messages"
MESSAGE_NOT_OBJECT = "message not an object"
MISSING_ROLE = "missing role"
UNKNOWN_ROLE = "unknown role"
MISSING_CONTENT = "missing content"
CONTENT_NOT_STRING = "content not a string"
EMPTY_CONTENT = "empty content"
UNKNOWN_KEY = "unknown key"
INVALID_WEIGHT = "invalid weight"
WEIGHT_NOT_ON_ASSISTANT = "weight on a non-assistant message"
NO_ASSISTANT = "no assistant message"
NOTHING_TRAINED = "no trained assistant message"
ASSISTANT_NOT_LAST = "assistant message not last"
TOOLS = "tool calling"
MIXED_FORMATS = "messages and prompt/completion together"
INVALID_SPLIT = "invalid split"
REASONS = (NOT_CHAT, MESSAGES_NOT_LIST, EMPTY_CONVERSATION, TOO_MANY_MESSAGES, MESSAGE_NOT_OBJECT, MISSING_ROLE,
           UNKNOWN_ROLE, MISSING_CONTENT, CONTENT_NOT_STRING, EMPTY_CONTENT, UNKNOWN_KEY, INVALID_WEIGHT,
           WEIGHT_NOT_ON_ASSISTANT, NO_ASSISTANT, NOTHING_TRAINED, ASSISTANT_NOT_LAST, TOOLS, MIXED_FORMATS,
           INVALID_SPLIT)

SPLIT_VALUES = {"train": "train", "training": "train", "validation": "validation", "valid": "validation",
                "val": "validation", "dev": "validation", "eval": "validation"}


@dataclass(frozen=True)
class Problem:
    reason: str  # one of REASONS: what the report counts
    detail: str  # where and what, for this line

    @property
    def text(self) -> str:
        return f"{self.reason}: {self.detail}"


def looks_like_chat(values: dict) -> bool:
    """A JSONL object in a chat format (the first line decides a file's task when none is chosen)."""
    return isinstance(values, dict) and ("messages" in values or ("prompt" in values and "completion" in values))


def _kind(value) -> str:
    if value is None:
        return "null"
    return {bool: "a boolean", int: "a number", float: "a number", str: "a string", list: "a list",
            dict: "an object"}.get(type(value), type(value).__name__)


def _shown(value) -> str:
    """A scalar as JSON shows it, cut short; a container only by its kind (never serialised: it may be deep)."""
    if isinstance(value, str):
        return json.dumps(value[:40] + ("…" if len(value) > 40 else ""), ensure_ascii=False)
    if isinstance(value, float) and not math.isfinite(value):
        return "NaN" if math.isnan(value) else ("Infinity" if value > 0 else "-Infinity")
    if isinstance(value, (bool, int, float)) or value is None:
        return json.dumps(value)
    return _kind(value)


def _keys(keys) -> str:
    return ", ".join(f"'{str(k)[:40]}'" for k in sorted(keys, key=str)[:5])


def _tool_keys(values: dict) -> list[str]:
    return [k for k in TOOL_KEYS if k in values]


def _weight(value) -> int | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return int(value) if value in (0, 1) else None


def normalize_conversation(values: dict) -> tuple[dict | None, str | None, Problem | None]:
    """(conversation, split or None, None) or (None, None, the problem) for one JSONL object."""
    tools = _tool_keys(values)
    if tools:
        return None, None, Problem(TOOLS, f"{TOOLS_UNSUPPORTED} (found {_keys(tools)})")
    split = None
    if "split" in values:
        raw = values["split"]
        split = SPLIT_VALUES.get(raw.strip().lower()) if isinstance(raw, str) else None
        if split is None:
            return None, None, Problem(INVALID_SPLIT, f"split must be train or validation, found {_shown(raw)}")
    if "messages" in values:
        if "prompt" in values or "completion" in values:
            return None, None, Problem(MIXED_FORMATS, "a line has either 'messages' or 'prompt' and 'completion', not both")
        unknown = set(values) - LINE_KEYS
        if unknown:
            return None, None, Problem(UNKNOWN_KEY, f"unknown key {_keys(unknown)} (a line has 'messages' and, "
                                                    "optionally, 'split')")
        conversation, problem = _messages(values["messages"])
        return (None, None, problem) if problem else (conversation, split, None)
    if "prompt" in values or "completion" in values:
        return _prompt_completion(values, split)
    return None, None, Problem(NOT_CHAT, f"no 'messages' list (nor 'prompt' and 'completion'); the line has "
                                         f"{_keys(values) or 'no keys'}")


def _prompt_completion(values: dict, split):
    missing = [k for k in ("prompt", "completion") if k not in values]
    if missing:
        return None, None, Problem(MISSING_CONTENT, f"'{missing[0]}' is missing (a prompt/completion line has both)")
    unknown = set(values) - PROMPT_COMPLETION_KEYS
    if unknown:
        return None, None, Problem(UNKNOWN_KEY, f"unknown key {_keys(unknown)} (a line has 'prompt', 'completion' "
                                                "and, optionally, 'split')")
    for key in ("prompt", "completion"):
        if not isinstance(values[key], str):
            return None, None, Problem(CONTENT_NOT_STRING, f"'{key}' must be a string, found {_kind(values[key])}")
        if not values[key].strip():
            return None, None, Problem(EMPTY_CONTENT, f"'{key}' is empty")
    return {"messages": [{"role": "user", "content": values["prompt"]},
                         {"role": "assistant", "content": values["completion"]}]}, split, None


def _messages(messages) -> tuple[dict | None, Problem | None]:
    if not isinstance(messages, list):
        return None, Problem(MESSAGES_NOT_LIST, f"'messages' must be a list of messages, found {_kind(messages)}")
    if not messages:
        return None, Problem(EMPTY_CONVERSATION, "'messages' is empty")
    if len(messages) > MAX_MESSAGES:
        return None, Problem(TOO_MANY_MESSAGES, f"{len(messages):,} messages; at most {MAX_MESSAGES} are accepted")
    out, weighted = [], False
    for number, message in enumerate(messages, start=1):
        where = f"message {number}"
        if not isinstance(message, dict):
            return None, Problem(MESSAGE_NOT_OBJECT, f"{where} must be an object with role and content, found "
                                                     f"{_kind(message)}")
        tools = _tool_keys(message)
        if tools or message.get("role") in TOOL_ROLES:
            found = _keys(tools) if tools else f"role {_shown(message.get('role'))}"
            return None, Problem(TOOLS, f"{TOOLS_UNSUPPORTED} ({where}: {found})")
        if "role" not in message:
            return None, Problem(MISSING_ROLE, f"{where} has no 'role'")
        role = message["role"]
        if role not in ROLES:
            return None, Problem(UNKNOWN_ROLE, f"{where} has role {_shown(role)}; use system, user or assistant")
        where = f"message {number} ({role})"
        unknown = set(message) - MESSAGE_KEYS
        if unknown:
            hint = " (names are not supported: chat templates leave them out)" if "name" in unknown else ""
            return None, Problem(UNKNOWN_KEY, f"{where} has unknown key {_keys(unknown)}{hint}; a message has "
                                              "role, content and, on assistant messages, weight")
        if "content" not in message:
            return None, Problem(MISSING_CONTENT, f"{where} has no 'content'")
        content = message["content"]
        if not isinstance(content, str):
            return None, Problem(CONTENT_NOT_STRING, f"{where}: 'content' must be a string, found {_kind(content)}")
        if not content.strip():
            return None, Problem(EMPTY_CONTENT, f"{where} has empty content")
        item = {"role": role, "content": content}
        if "weight" in message:
            if role != "assistant":
                return None, Problem(WEIGHT_NOT_ON_ASSISTANT, f"{where} has a weight; only assistant messages are "
                                                              "weighted (0: not trained on, 1: trained on)")
            weight = _weight(message["weight"])
            if weight is None:
                return None, Problem(INVALID_WEIGHT, f"{where}: weight must be 0 or 1, found {_shown(message['weight'])}")
            item["weight"], weighted = weight, True
        out.append(item)
    assistants = [m for m in out if m["role"] == "assistant"]
    if not assistants:
        return None, Problem(NO_ASSISTANT, "only system and user messages: there is nothing to train on")
    if not any(m.get("weight", 1) for m in assistants):
        return None, Problem(NOTHING_TRAINED, "every assistant message has weight 0: there is nothing to train on")
    if out[-1]["role"] != "assistant" and not weighted:
        return None, Problem(ASSISTANT_NOT_LAST, f"the last message (message {len(out)}) is from the "
                                                 f"{out[-1]['role']}: end the conversation with the assistant reply to "
                                                 "train on, or mark the assistant messages to train with weight")
    return {"messages": out}, None


def conversation_key(conversation: dict) -> int:
    """64 bits identifying a conversation exactly (roles, contents, weights): duplicates share it."""
    text = json.dumps(conversation["messages"], ensure_ascii=False, sort_keys=True, separators=(",", ":"))
    return int.from_bytes(hashlib.blake2b(text.encode("utf-8", "surrogatepass"), digest_size=8).digest(), "little")


def conversation_words(conversation: dict) -> int:
    return sum(len(m["content"].split()) for m in conversation["messages"])


# --- token statistics with a base model's chat template -----------------------------------------

TRUNCATION_RULE = (
    "A conversation longer than {limit} tokens is cut at {limit} tokens (its end is dropped, as the worker does): "
    "assistant tokens past the cut are not trained on, and a conversation left with no trained token is skipped.")


class TemplateError(Exception):
    pass


def _render(tokenizer, messages, template, *, generation_prompt: bool) -> str:
    try:
        return tokenizer.apply_chat_template(messages, chat_template=template, tokenize=False,
                                             add_generation_prompt=generation_prompt)
    except Exception as exc:  # jinja's errors, the template's raise_exception, a template reading messages[0]
        raise TemplateError(f"the chat template refuses it ({type(exc).__name__}: {str(exc)[:160]})") from None


def _render_spans(tokenizer, messages, template) -> tuple[str, list[tuple[str, str]]]:
    """The whole conversation rendered, and for each trained assistant message the renderings of the
    messages before it (with the generation prompt) and of the conversation up to and including it."""
    full = _render(tokenizer, messages, template, generation_prompt=False)
    spans, last = [], len(messages) - 1
    for index, message in enumerate(messages):
        if message["role"] == "assistant" and message.get("weight", 1):
            before = _render(tokenizer, messages[:index], template, generation_prompt=True) if index else ""
            after = full if index == last else _render(tokenizer, messages[: index + 1], template, generation_prompt=False)
            # Less the whitespace after the end marker: not trained (workers.chat.data, ChatEncoder._reply_span).
            spans.append((before, after.rstrip()))
    return full, spans


def _trained_positions(tokenizer, full: str, spans, ids, offsets) -> list[int]:
    if all(full.startswith(after) and after.startswith(before) for before, after in spans):
        # One tokenization: a token is trained when it starts inside an assistant span.
        bounds = [(len(before), len(after)) for before, after in spans]
        starts = [start for start, _end in bounds]
        trained = []
        for position, (start, end) in enumerate(offsets):
            if end <= start:
                continue
            k = bisect.bisect_right(starts, start) - 1
            if k >= 0 and start < bounds[k][1]:
                trained.append(position)
        return trained
    # The template renders a prefix differently from the conversation's start (it treats the last message
    # apart): count each span's tokens from its own renderings instead.
    trained = set()
    for before, after in spans:
        first = len(tokenizer(before, add_special_tokens=False)["input_ids"]) if before else 0
        last = len(tokenizer(after, add_special_tokens=False)["input_ids"])
        trained.update(range(first, min(last, len(ids))))
    return sorted(trained)


def conversation_tokens(tokenizer, conversation: dict, template: str | None = None) -> tuple[int, list[int]]:
    """(tokens in the rendered conversation, positions of its trained tokens).

    The trained tokens of an assistant message with weight 1 (or none) are those
    that rendering the conversation up to and including it adds to rendering the
    messages before it with the generation prompt: the reply and its end-of-turn
    marker, not the role header. Whole prefixes are rendered (never one message
    alone): templates add system prompts and separators that depend on position."""
    full, spans = _render_spans(tokenizer, conversation["messages"], template)
    encoded = tokenizer(full, add_special_tokens=False, return_offsets_mapping=True)
    ids = encoded["input_ids"]
    return len(ids), _trained_positions(tokenizer, full, spans, ids, encoded["offset_mapping"])


def _percentile(values: list[int], p: float) -> int:
    return values[min(len(values) - 1, max(0, math.ceil(p / 100 * len(values)) - 1))] if values else 0


@dataclass
class ChatTokenCounter:
    """Token statistics of conversations with one base model's tokenizer and template."""

    tokenizer: object
    max_length: int
    context_length: int | None = None
    template: str | None = None
    lengths: list[int] = field(default_factory=list)
    splits: dict = field(default_factory=lambda: {s: {"conversations": 0, "tokens": 0, "trained_tokens": 0,
                                                      "trained_tokens_kept": 0} for s in ("train", "validation")})
    over_max_length: int = 0
    over_context_length: int = 0
    tokens_cut: int = 0
    skipped_after_truncation: int = 0
    template_errors: int = 0
    template_error_examples: list = field(default_factory=list)
    _pending: list = field(default_factory=list, repr=False)

    @property
    def limit(self) -> int:
        """Where conversations are cut: max_length, or the model's context when that is shorter."""
        return min(self.max_length, self.context_length) if self.context_length else self.max_length

    def add(self, conversation: dict, *, split: str, where: str) -> None:
        """Render now (a template error is reported with `where`); tokenize in batches."""
        try:
            full, spans = _render_spans(self.tokenizer, conversation["messages"], self.template)
        except TemplateError as exc:
            self.template_errors += 1
            if len(self.template_error_examples) < MAX_TEMPLATE_ERROR_EXAMPLES:
                self.template_error_examples.append({"where": where, "reason": str(exc)})
            return
        self._pending.append((full, spans, split))
        if len(self._pending) >= TOKENIZE_BATCH:
            self._flush()

    def _flush(self) -> None:
        if not self._pending:
            return
        encoded = self.tokenizer([full for full, _, _ in self._pending], add_special_tokens=False,
                                 return_offsets_mapping=True)
        for (full, spans, split), ids, offsets in zip(self._pending, encoded["input_ids"], encoded["offset_mapping"]):
            self._count(len(ids), _trained_positions(self.tokenizer, full, spans, ids, offsets), split)
        self._pending.clear()

    def _count(self, total: int, trained: list[int], split: str) -> None:
        limit = self.limit
        kept = bisect.bisect_left(trained, limit)
        self.lengths.append(total)
        counts = self.splits[split]
        counts["conversations"] += 1
        counts["tokens"] += total
        counts["trained_tokens"] += len(trained)
        counts["trained_tokens_kept"] += kept
        if total > self.max_length:
            self.over_max_length += 1
        if self.context_length and total > self.context_length:
            self.over_context_length += 1
        if total > limit:
            self.tokens_cut += total - limit
            if trained and not kept:
                self.skipped_after_truncation += 1

    def report(self, **about) -> dict:
        self._flush()
        lengths = sorted(self.lengths)
        n = len(lengths)
        top = lengths[-1] if n else 0
        width = max(1, math.ceil((top + 1) / HISTOGRAM_BINS))
        histogram = [0] * HISTOGRAM_BINS
        for value in lengths:
            histogram[min(HISTOGRAM_BINS - 1, value // width)] += 1
        trained = sum(s["trained_tokens"] for s in self.splits.values())
        kept = sum(s["trained_tokens_kept"] for s in self.splits.values())
        limit = self.limit
        cut = sum(1 for v in lengths if v > limit)
        return {
            **about,
            "max_length": self.max_length, "context_length": self.context_length, "truncated_at": limit,
            "conversations": n, "mean": round(sum(lengths) / n, 2) if n else 0,
            "p50": _percentile(lengths, 50), "p95": _percentile(lengths, 95), "max": top,
            "tokens": sum(lengths), "trained_tokens": trained, "trained_tokens_kept": kept,
            "trained_tokens_cut": trained - kept,
            "over_max_length": self.over_max_length, "over_context_length": self.over_context_length,
            "truncated": cut, "truncated_share": round(cut / n, 4) if n else 0, "tokens_cut": self.tokens_cut,
            "skipped_after_truncation": self.skipped_after_truncation,
            "truncation": TRUNCATION_RULE.format(limit=limit),
            "train": dict(self.splits["train"]), "validation": dict(self.splits["validation"]),
            "template_errors": {"count": self.template_errors, "examples": list(self.template_error_examples)},
            "histogram": {"edges": [i * width for i in range(HISTOGRAM_BINS + 1)], "counts": histogram},
        }


def warnings_for(tokens: dict) -> list[str]:
    """What the token statistics should make a user look at."""
    out = []
    name = tokens.get("base_model_name") or tokens.get("base_model") or "the base model"
    if tokens.get("over_context_length"):
        out.append(f"{tokens['over_context_length']} conversation(s) are longer than {name}'s context of "
                   f"{tokens['context_length']} tokens.")
    if tokens.get("truncated"):
        out.append(f"{tokens['truncated']} conversation(s) ({tokens['truncated_share']:.0%}) are longer than "
                   f"{tokens['truncated_at']} tokens and will be cut there: {tokens['trained_tokens_cut']} trained "
                   f"token(s) are lost" + (f", and {tokens['skipped_after_truncation']} conversation(s) keep no trained "
                                           "token and are skipped" if tokens.get("skipped_after_truncation") else "")
                   + ". Raise max_length or shorten them.")
    errors = tokens.get("template_errors") or {}
    if errors.get("count"):
        first = errors["examples"][0] if errors.get("examples") else {"where": "?", "reason": "?"}
        out.append(f"{name}'s chat template refuses {errors['count']} conversation(s) (first: {first['where']}: "
                   f"{first['reason']}); they are left out of the statistics and cannot be trained with this model.")
    return out
