"""Chat conversations → token ids and labels for supervised fine-tuning.

Input: the platform's normalized JSONL, one `{"messages": [{"role", "content", "weight"?}, ...]}` a line
(roles system | user | assistant; `weight` 0 or 1 on assistant messages, default 1; prompt/completion
rows arrive already turned into [user, assistant]).

Each conversation is rendered with the base model's own chat template and tokenized once; the labels are
the token ids on the assistant messages whose weight is 1 and -100 everywhere else (system and user turns,
the template's scaffolding such as `<|im_start|>assistant\n` or a default system prompt, weight-0 replies,
padding). An assistant span runs from the end of the rendering of the turns before it with the generation
prompt to the end of the rendering that includes it, so it holds the reply and the template's end-of-turn
marker (`<|im_end|>`: the model learns to stop) but not the whitespace after it. Spans are character
ranges of the one rendered text, mapped to tokens through the tokenizer's offsets, so a BPE merge across a
boundary cannot shift them (counting the tokens of a separately tokenized prefix can); a token that
overlaps a span is trained (the rule of transformers' `return_assistant_tokens_mask`). Templates with
`{% generation %}` blocks give the spans themselves. A template that renders earlier turns differently
from a prefix of the conversation (so prefixes do not line up) is trained reply by reply: each trained
reply is an example of its own, the conversation up to it as the template renders it for generation.

Control tokens inside the content (a user who writes `<|im_end|>`) are encoded as plain text, never as the
control token, so data cannot forge the template's structure (transformers' `sanitize_control_tokens`).

Truncation keeps the start: the first `max_length` tokens. A conversation left with no trained token (all
replies weight 0, or every trained reply beyond `max_length`) is skipped and counted by reason.
"""
from __future__ import annotations

import json
import re
from collections import Counter
from dataclasses import dataclass, field

IGNORE_INDEX = -100
_MARK_START, _MARK_END = "\ue000", "\ue001"  # private-use characters around control tokens found in content
_MARKED = re.compile(f"{_MARK_START}(.*?){_MARK_END}", re.S)
_GENERATION_TAG = re.compile(r"\{%-?\s*generation\s*-?%\}")

# Why a conversation gave no training example (counted, reported).
NO_ASSISTANT = "no assistant message"
NO_TRAINED_TOKENS = "no assistant message with weight 1"
TRUNCATED_AWAY = "every trained token beyond max_length"
STARTS_WITH_ASSISTANT = "starts with an assistant message"
TEMPLATE_REFUSED = "the chat template refused it"
TEMPLATE_NOT_PREFIX = "the chat template renders earlier turns differently"


@dataclass
class EncodedConversation:
    input_ids: list[int]
    labels: list[int]
    trained_tokens: int  # labels != -100
    full_length: int  # tokens before truncation
    source_index: int  # its line in the file (0-based, blank lines not counted)

    def __len__(self) -> int:
        return len(self.input_ids)


@dataclass
class EncodingReport:
    examples: list[EncodedConversation] = field(default_factory=list)
    skipped: Counter = field(default_factory=Counter)  # reason → conversations
    truncated: int = 0  # conversations cut to max_length (and kept)
    reply_by_reply: int = 0  # conversations trained as one text per reply (their template's prefixes differ)

    def summary(self) -> dict:
        used = len({e.source_index for e in self.examples})
        return {"conversations": used + sum(self.skipped.values()), "used": used, "examples": len(self.examples),
                "truncated": self.truncated, "reply_by_reply": self.reply_by_reply, "skipped": dict(self.skipped),
                "trained_tokens": sum(e.trained_tokens for e in self.examples),
                "tokens": sum(len(e) for e in self.examples)}


def read_conversations(path: str) -> list[list[dict]]:
    with open(path, encoding="utf-8") as fh:
        return [json.loads(line)["messages"] for line in fh if line.strip()]


class SkipConversation(Exception):
    """A conversation that gives no training example; the message is the reason (see the constants above)."""


class ChatEncoder:
    """Renders and tokenizes conversations with one tokenizer's chat template."""

    def __init__(self, tokenizer, *, max_length: int):
        if not getattr(tokenizer, "is_fast", False):
            raise ValueError("Chat fine-tuning needs a fast tokenizer (tokenizer.json): it maps the assistant spans "
                             "to tokens through character offsets.")
        template = tokenizer.chat_template
        if not template:
            raise ValueError("The base model's tokenizer has no chat template (tokenizer.chat_template); add one to "
                             "the model folder (chat_template.jinja) before fine-tuning it on chats.")
        self.tokenizer = tokenizer
        self.template = tokenizer.get_chat_template()
        self.max_length = max_length
        self.uses_generation_tags = bool(_GENERATION_TAG.search(self.template))
        control = sorted(self._control_tokens(), key=len, reverse=True)  # longest first: a token before its parts
        self._control = re.compile("|".join(map(re.escape, control))) if control else None

    def _control_tokens(self) -> list[str]:
        """Special tokens, and added tokens the template writes (as transformers' `_get_control_tokens`)."""
        return [t.content for t in self.tokenizer.added_tokens_decoder.values()
                if t.special or (t.content in self.template and not t.content.isspace())]

    # --- rendering ---------------------------------------------------------------------------------

    def _mark(self, text: str) -> str:
        text = text.replace(_MARK_START, "").replace(_MARK_END, "")  # nobody forges a marker
        return self._control.sub(lambda m: f"{_MARK_START}{m.group(0)}{_MARK_END}", text) if self._control else text

    def _messages(self, messages: list[dict]) -> list[dict]:
        """What the template sees: role and content only (the weight is ours), control tokens marked."""
        return [{"role": m["role"], "content": self._mark(m["content"])} for m in messages]

    def render(self, messages: list[dict], *, add_generation_prompt: bool = False) -> str:
        """The template's text for `messages`, control tokens in the content marked."""
        try:
            return self.tokenizer.apply_chat_template(self._messages(messages), tokenize=False,
                                                      add_generation_prompt=add_generation_prompt)
        except Exception as error:  # jinja2's TemplateError, or raise_exception() in the template
            raise SkipConversation(f"{TEMPLATE_REFUSED}: {error}") from error

    def encode_text(self, text: str) -> tuple[list[int], list[tuple[int, int]]]:
        """Token ids and their (start, end) offsets in `text` (a rendering with marked content): marked
        control tokens are encoded as plain text, the rest as the tokenizer does, in one call per piece."""
        if _MARK_START not in text and _MARK_END not in text:
            return self._encode_piece(text, 0, as_text=False)
        ids, offsets, cursor = [], [], 0
        for i, piece in enumerate(_MARKED.split(text)):  # [text, marked token, text, marked token, ..., text]
            marked = bool(i % 2)
            start = cursor + marked
            cursor = start + len(piece) + marked
            # A lone marker (a template that cut a marked token apart) is dropped but still breaks the text.
            for part in re.finditer(f"[^{_MARK_START}{_MARK_END}]+", piece):
                part_ids, part_offsets = self._encode_piece(part.group(0), start + part.start(), as_text=marked)
                ids.extend(part_ids)
                offsets.extend(part_offsets)
        return ids, offsets

    def _encode_piece(self, text: str, at: int, *, as_text: bool) -> tuple[list[int], list[tuple[int, int]]]:
        enc = self.tokenizer(text, add_special_tokens=False, return_offsets_mapping=True, split_special_tokens=as_text)
        return list(enc["input_ids"]), [(at + a, at + b) for a, b in enc["offset_mapping"]]

    # --- spans and labels --------------------------------------------------------------------------

    def renderings(self, messages: list[dict]) -> list[tuple[str, list[tuple[int, int, int]]]]:
        """The texts to train on, each with its assistant spans as (start, end, weight) in its characters.

        Normally one: the whole conversation, every reply's span in it. A template that renders earlier
        turns differently from a prefix of the conversation (Qwen3 drops earlier replies' reasoning; the
        last reply may close differently) cannot be aligned that way: then each trained reply is a text of
        its own, the conversation up to it as the template renders it at generation time, only that
        reply trained (as TRL does for such templates)."""
        assistants = [i for i, m in enumerate(messages) if m["role"] == "assistant"]
        if not assistants:
            raise SkipConversation(NO_ASSISTANT)
        weights = [int(messages[i].get("weight", 1)) for i in assistants]
        if not any(weights):
            raise SkipConversation(NO_TRAINED_TOKENS)
        if self.uses_generation_tags:
            text, spans = self._generation_spans(messages)
            if len(spans) == len(assistants):
                return [(text, [(a, b, w) for (a, b), w in zip(spans, weights)])]
        if assistants[0] == 0:
            raise SkipConversation(STARTS_WITH_ASSISTANT)
        text = self.render(messages)
        pieces = [(i, weight, *self._reply_span(messages, i)) for i, weight in zip(assistants, weights)]
        if all(text.startswith(through) for _i, _w, through, _span in pieces):
            return [(text, [(*span, weight) for _i, weight, _through, span in pieces])]
        own = [(through, [(*span, 1)]) for _i, weight, through, span in pieces if weight]
        if not own:
            raise SkipConversation(TEMPLATE_NOT_PREFIX)
        return own

    def _reply_span(self, messages: list[dict], i: int) -> tuple[str, tuple[int, int]]:
        """The rendering through message i and its reply's span: from the end of the rendering before it
        with the generation prompt to the end of this one, less the whitespace after the end marker."""
        before = self.render(messages[:i], add_generation_prompt=True)
        through = self.render(messages[:i + 1])
        if not through.startswith(before):
            raise SkipConversation(TEMPLATE_NOT_PREFIX)
        return through, (len(before), len(before) + len(through[len(before):].rstrip()))

    def _generation_spans(self, messages: list[dict]) -> tuple[str, list[tuple[int, int]]]:
        from transformers.utils.chat_template_utils import render_jinja_template

        try:
            rendered, indices = render_jinja_template(
                conversations=[self._messages(messages)], chat_template=self.template,
                return_assistant_tokens_mask=True, **self.tokenizer.special_tokens_map)
        except Exception as error:
            raise SkipConversation(f"{TEMPLATE_REFUSED}: {error}") from error
        return rendered[0], list(indices[0])

    def _labels(self, text: str, spans: list[tuple[int, int, int]]) -> tuple[list[int], list[int]]:
        trained = [(a, b) for a, b, weight in spans if weight]
        ids, offsets = self.encode_text(text)
        labels, span = [], 0
        for token, (start, end) in zip(ids, offsets):
            while span < len(trained) and start >= trained[span][1]:
                span += 1
            inside = span < len(trained) and end > trained[span][0] and end > start
            labels.append(token if inside else IGNORE_INDEX)
        return ids, labels

    def labelled(self, messages: list[dict]) -> list[tuple[list[int], list[int]]]:
        """Token ids and labels of each text to train on (not truncated); raises SkipConversation."""
        return [self._labels(text, spans) for text, spans in self.renderings(messages)]

    def encode(self, messages: list[dict], *, source_index: int = 0) -> list[EncodedConversation]:
        """The conversation's training examples (one, but for templates whose prefixes do not line up),
        truncated to max_length (the start kept); raises SkipConversation when none has a trained token."""
        examples = []
        for ids, labels in self.labelled(messages):
            kept_ids, kept_labels = ids[:self.max_length], labels[:self.max_length]
            count = sum(label != IGNORE_INDEX for label in kept_labels)
            if count:
                examples.append(EncodedConversation(kept_ids, kept_labels, count, len(ids), source_index))
        if not examples:
            raise SkipConversation(TRUNCATED_AWAY)
        return examples

    def prompt_ids(self, messages: list[dict]) -> list[int]:
        """What generation starts from: every turn before the last assistant message, then the generation
        prompt (its last `max_length` tokens, so the newest turns stay)."""
        last = max(i for i, m in enumerate(messages) if m["role"] == "assistant")
        ids, _ = self.encode_text(self.render(messages[:last], add_generation_prompt=True))
        return ids[-self.max_length:]

    def end_of_turn_ids(self) -> list[int]:
        """The control tokens the template writes right after a reply (e.g. `<|im_end|>`): generation stops
        on them (they go into the exported generation_config.json too)."""
        reply = "Hello"
        try:
            ((text, spans),) = self.renderings([{"role": "user", "content": "Hi"}, {"role": "assistant", "content": reply}])
        except SkipConversation:
            return []
        start, end, _ = spans[0]
        after_reply = text.find(reply, start) + len(reply)
        ids, offsets = self.encode_text(text)
        added = set(self.tokenizer.added_tokens_decoder)
        return sorted({t for t, (a, b) in zip(ids, offsets) if after_reply <= a < end and t in added})


def encode_conversations(conversations: list[list[dict]], encoder: ChatEncoder) -> EncodingReport:
    report = EncodingReport()
    for index, messages in enumerate(conversations):
        try:
            examples = encoder.encode(messages, source_index=index)
        except SkipConversation as skipped:
            report.skipped[str(skipped).split(":", 1)[0]] += 1
            continue
        report.truncated += any(e.full_length > len(e) for e in examples)
        report.reply_by_reply += len(examples) > 1
        report.examples.extend(examples)
    return report


def carve_test_conversations(conversations: list[list[dict]], fraction: float, *,
                             seed: int | None = None) -> tuple[list[list[dict]], list[list[dict]]]:
    """(rest, test): about `fraction` of the conversations held out as a test split, whole, a pure function of
    (conversations, fraction, seed) as workers.data.carve_test is for labelled rows (the same seed), so every
    attempt of a job, and the platform's held-out comparisons, carve the same ones. Identical conversations
    stay on one side; at least one stays in training. Both keep the input's order."""
    import random

    from ..data import TEST_CARVE_SEED

    groups: dict[str, list[int]] = {}
    for index, messages in enumerate(conversations):
        groups.setdefault(json.dumps(messages, sort_keys=True, ensure_ascii=False), []).append(index)
    ordered = list(groups.values())
    random.Random(TEST_CARVE_SEED if seed is None else seed).shuffle(ordered)
    wanted = round(len(conversations) * fraction)
    held: set[int] = set()
    for members in ordered[:-1]:
        if len(held) >= wanted:
            break
        held.update(members)
    return ([m for i, m in enumerate(conversations) if i not in held],
            [m for i, m in enumerate(conversations) if i in held])


def _percentile(sorted_values: list[int], q: float) -> int:
    if not sorted_values:
        return 0
    return sorted_values[min(len(sorted_values) - 1, int(round(q * (len(sorted_values) - 1))))]


def token_statistics(conversations: list[list[dict]], tokenizer, *, max_length: int, context_length: int | None = None) -> dict:
    """What the preflight reports (Django-free; the platform calls it with the chosen base model's tokenizer):
    tokens per conversation with the chat template (p50 / p95 / max, before truncation), trained tokens
    (assistant tokens with weight 1, after truncation), how many exceed `max_length` and the model's
    context, and the skipped conversations by reason. Truncation keeps each conversation's first
    `max_length` tokens; one with no trained token left is skipped."""
    encoder = ChatEncoder(tokenizer, max_length=max_length)
    lengths, trained, lost, skipped = [], 0, 0, Counter()
    over_max = over_context = losing = 0
    for messages in conversations:
        try:
            texts = encoder.labelled(messages)
        except SkipConversation as error:
            skipped[str(error).split(":", 1)[0]] += 1
            continue
        longest = max(len(ids) for ids, _labels in texts)
        lengths.append(longest)
        over_max += longest > max_length
        over_context += bool(context_length) and longest > context_length
        everything = sum(label != IGNORE_INDEX for _ids, labels in texts for label in labels)
        kept = sum(label != IGNORE_INDEX for _ids, labels in texts for label in labels[:max_length])
        trained, lost = trained + kept, lost + everything - kept
        if not kept:
            skipped[TRUNCATED_AWAY] += 1
        elif kept < everything:
            losing += 1
    lengths.sort()
    return {"conversations": len(conversations), "unit": "tokens", "max_length": max_length,
            "p50": _percentile(lengths, 0.5), "p95": _percentile(lengths, 0.95), "max": lengths[-1] if lengths else 0,
            "mean": sum(lengths) / len(lengths) if lengths else 0.0,
            "over_max_length": over_max, "over_context": over_context if context_length else None,
            "trained_tokens": trained, "trained_tokens_lost_to_truncation": lost,
            "conversations_losing_trained_tokens": losing, "skipped": dict(skipped),
            "truncation": "keeps the first max_length tokens; a conversation with no trained token left is skipped"}
