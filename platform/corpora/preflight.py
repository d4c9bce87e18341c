"""Preflight: map columns, validate every row, gather the report, carve a
split, and write normalized JSONL — before a GPU second is spent.

Free of Django: takes an open text stream and returns a PreflightResult with the
report (a JSON-able dict) and the paths of the normalized train/validation files.

Chat datasets (JSONL conversations, corpora/chat.py) take run_chat_preflight at
the end of this module: the same report shape (rows, rejected lines, duplicates,
split, lengths, warnings) plus the conversations and their token statistics.
"""
from __future__ import annotations

import hashlib
import json
from array import array
import math
import os
import re
import time
from collections import Counter
from dataclasses import dataclass, field

import numpy as np

from core.csv_export import looks_like_formula

from .chat import ChatTokenCounter, conversation_key, conversation_words, looks_like_chat, normalize_conversation, warnings_for
from .parsing import DatasetFileError, FileInfo, Record, Rejected, iter_records, parse_json

TASK_FIELDS = {
    "text_classification": ("text", "label"),
    "text_pair_classification": ("text_a", "text_b", "label"),
    "token_classification": ("tokens", "tags"),
}
TEXT_FIELDS = {"text", "text_a", "text_b"}


def _plural(word: str) -> str:
    if len(word) == 1:
        return word
    if word.endswith("y") and word[-2] not in "aeiou":
        return word[:-1] + "ies"
    return word + ("es" if word.endswith(("s", "x", "ch", "sh")) else "s")


# What real corpora call their label (any case, singular or plural), best first.
LABEL_WORDS = ("label", "sentiment", "emotion", "topic", "intent", "class", "category", "target", "y", "tag", "answer")
LABEL_NAMES = tuple(dict.fromkeys(name for word in LABEL_WORDS for name in (word, _plural(word))))
# Column names recognised without help, best first.
SYNONYMS = {
    "text": ("text", "sentence", "utterance", "query", "question", "content", "input", "document", "review", "body",
             "tweet", "message", "comment"),
    "label": LABEL_NAMES,
    "text_a": ("text_a", "sentence1", "premise", "question1", "text1", "query"),
    "text_b": ("text_b", "sentence2", "hypothesis", "question2", "text2", "passage"),
    "tokens": ("tokens", "words"),
    "tags": ("tags", "ner_tags", "pos_tags", "labels"),
    "split": ("split", "subset", "fold"),
}
SPLIT_VALUES = {"train": "train", "training": "train", "validation": "validation", "valid": "validation",
                "val": "validation", "dev": "validation", "eval": "validation"}
# Rows read to choose between several label candidates (by their distinct values).
LABEL_SAMPLE_ROWS = 1000
LABEL_SAMPLE_CHARS = 8_000_000
MAX_REJECTED_EXAMPLES = 100
MAX_REJECTED_FRACTION = 0.10
IMBALANCE_RATIO_WARNING = 10
MIN_EXAMPLES_PER_LABEL = 5
HISTOGRAM_BINS = 20


@dataclass
class PreflightOptions:
    task: str | None = None
    column_mapping: dict = field(default_factory=dict)
    validation_fraction: float = 0.1
    seed: int = 13
    max_length: int = 128
    max_rejected_fraction: float = MAX_REJECTED_FRACTION


HEAD_ROWS = 20  # accepted rows kept, in file order, to show before a version is kept


@dataclass
class PreflightResult:
    report: dict
    train_path: str
    validation_path: str
    train_count: int
    validation_count: int
    head: list[dict] = field(default_factory=list)  # the first accepted rows as they are stored


def _normal(name: str) -> str:
    return name.strip().lower()


def _last_word(name: str) -> str:
    words = re.split(r"[^a-z0-9]+", re.sub(r"([a-z0-9])([A-Z])", r"\1_\2", name.strip()).lower())
    words = [w for w in words if w]
    return words[-1] if words else ""


def label_candidates(columns: list[str], taken=()) -> list[str]:
    """Columns that may hold the label, best first: named like one (Sentiment,
    labels, CLASS…), else ending in such a word (airline_sentiment)."""
    free = [c for c in columns if c not in taken]
    exact = [c for name in LABEL_NAMES for c in free if _normal(c) == name]
    if exact:
        return list(dict.fromkeys(exact))
    return [c for c in free if _last_word(c) in LABEL_NAMES]


def _distinct_values(rows: list[dict], column: str) -> int:
    return len({v if isinstance(v, str) else json.dumps(v, sort_keys=True, default=str)
                for v in (row.get(column) for row in rows) if v not in (None, "")})


def resolve_mapping(columns: list[str], options: PreflightOptions, sample=None) -> tuple[str, dict, dict | None]:
    """(task, {field: column}, how the label was chosen or None) from explicit
    settings or recognisable names. `sample()` returns the first rows (a list of
    dicts); it is called only when several columns could be the label, and the
    one with the fewest distinct values (at least two) is taken."""
    lowered = {}
    for column in columns:
        lowered.setdefault(_normal(column), column)
    explicit = {k: v for k, v in (options.column_mapping or {}).items() if v}
    for fieldname, column in explicit.items():
        if column not in columns:
            raise DatasetFileError(
                f"Column '{column}' (given for {fieldname}) is not in the file; its columns are: {', '.join(columns)}.",
                code="unknown_column", field=f"{fieldname}_column",
            )
    label_choice = None

    def choose_label(taken: set) -> str | None:
        nonlocal label_choice
        candidates = label_candidates(columns, taken)
        if len(candidates) <= 1 or sample is None:
            return candidates[0] if candidates else None
        rows = sample()
        distinct = {c: _distinct_values(rows, c) for c in candidates}
        usable = [c for c in candidates if distinct[c] >= 2] or candidates
        chosen = min(usable, key=lambda c: (distinct[c], candidates.index(c)))
        label_choice = {"column": chosen, "candidates": distinct, "sampled_rows": len(rows)}
        return chosen

    def find(fieldname: str, taken: set) -> str | None:
        if fieldname in explicit:
            return explicit[fieldname]
        if fieldname == "label":
            return choose_label(taken)
        for name in SYNONYMS[fieldname]:
            if name in lowered and lowered[name] not in taken:
                return lowered[name]
        return None

    tasks = [options.task] if options.task else ["token_classification", "text_pair_classification", "text_classification"]
    last_missing = None
    for task in tasks:
        mapping, taken = {}, set()
        label_choice = None
        for fieldname in TASK_FIELDS[task]:
            column = find(fieldname, taken)
            if column is None:
                break
            mapping[fieldname] = column
            taken.add(column)
        else:
            split_column = find("split", taken)
            if split_column:
                mapping["split"] = split_column
            return task, mapping, label_choice
        last_missing = (task, fieldname)
    task, fieldname = last_missing
    hint = (" A label column may be called " + ", ".join(LABEL_WORDS) + " (any case, or plural).") if fieldname == "label" else ""
    raise DatasetFileError(
        f"Could not find a column for '{fieldname}' ({task.replace('_', ' ')}); the file's columns are: "
        f"{', '.join(columns)}. Name it with {fieldname}_column.{hint}",
        code="unmapped_column", field=f"{fieldname}_column",
    )


def _label_choice_warning(choice: dict) -> str:
    others = ", ".join(f"'{c}' {n}" for c, n in choice["candidates"].items() if c != choice["column"])
    return (f"Several columns could be the label; '{choice['column']}' was chosen: it has the fewest distinct values "
            f"({choice['candidates'][choice['column']]} in the first {choice['sampled_rows']} rows; {others}). "
            "Set label_column to use another.")


def _as_list(value, fieldname: str):
    if isinstance(value, str):
        value, problem = parse_json(value)
        if problem:
            return None, f"{fieldname} is not a JSON list ({problem})"
    if not isinstance(value, list) or not value:
        return None, f"{fieldname} must be a non-empty list"
    if not all(isinstance(v, (str, int)) for v in value):
        return None, f"{fieldname} must hold strings"
    return [str(v) for v in value], None


def normalize_row(record: Record, task: str, mapping: dict) -> tuple[dict | None, str | None]:
    """(normalized row, None) or (None, rejection reason)."""
    out = {}
    for fieldname in TASK_FIELDS[task]:
        column = mapping[fieldname]
        value = record.values.get(column)
        if fieldname in ("tokens", "tags"):
            items, problem = _as_list(value, fieldname)
            if problem:
                return None, problem
            out[fieldname] = items
            continue
        if value is None or (isinstance(value, str) and not value.strip()):
            return None, f"missing {fieldname}"
        if not isinstance(value, (str, int, float, bool)):
            return None, f"{fieldname} must be text, found {type(value).__name__}"
        out[fieldname] = str(value).strip()
    if task == "token_classification" and len(out["tokens"]) != len(out["tags"]):
        return None, f"{len(out['tokens'])} tokens but {len(out['tags'])} tags"
    if "split" in mapping:
        raw = str(record.values.get(mapping["split"], "")).strip().lower()
        if raw not in SPLIT_VALUES:
            return None, f"split must be train or validation, found '{raw[:20]}'"
        out["split"] = SPLIT_VALUES[raw]
    return out, None


def _text_key(row: dict, task: str) -> int:
    if task == "token_classification":
        parts = row["tokens"]
    else:
        parts = [row[f] for f in TASK_FIELDS[task] if f in TEXT_FIELDS]
    return int.from_bytes(hashlib.blake2b("\x1f".join(parts).encode(), digest_size=8).digest(), "little")


def _labels_of(row: dict, task: str) -> list[str]:
    return row["tags"] if task == "token_classification" else [row["label"]]


SPLIT_CODES = {None: 0, "train": 1, "validation": 2}


class Rejections:
    """The rejected rows of an upload: counts by reason, and the first
    MAX_REJECTED_EXAMPLES lines with their reason (what the report shows)."""

    def __init__(self):
        self.by_reason, self.examples, self.missing = Counter(), [], Counter()

    def add(self, line: int, reason: str, detail: str | None = None) -> None:
        """Counted under `reason`; the example reads "reason: detail" when a detail is given."""
        self.by_reason[reason] += 1
        if reason.startswith("missing "):
            self.missing[reason[len("missing "):]] += 1
        if len(self.examples) < MAX_REJECTED_EXAMPLES:
            self.examples.append({"line": line, "reason": f"{reason}: {detail}" if detail else reason})

    @property
    def count(self) -> int:
        return sum(self.by_reason.values())

    def no_valid_rows(self, what: str = "row") -> DatasetFileError:
        first = self.examples[0] if self.examples else {"line": None, "reason": "?"}
        return DatasetFileError(
            f"No valid {what}s: every {what} was rejected (first: line {first['line']}: {first['reason']}).",
            code="no_valid_rows", line=first["line"])

    def check_budget(self, total: int, options: PreflightOptions, what: str = "rows") -> None:
        _check_rejection_budget(total, self.by_reason, self.examples, options, what)

    def report(self) -> dict:
        return {"by_reason": dict(self.by_reason.most_common()), "examples": self.examples[:MAX_REJECTED_EXAMPLES]}


def run_preflight(text, info: FileInfo, options: PreflightOptions, workdir: str, tokenizer=None, tokenizer_name: str | None = None,
                  chat_measure=None) -> PreflightResult:
    """Memory per row is 17 bytes (text hash, label id, line, given split),
    whatever the row's length: the rows themselves stream to disk.

    A chat file (task chat, or JSONL whose first object has messages, or prompt
    and completion) goes to run_chat_preflight with `chat_measure`."""
    started = time.perf_counter()
    records = iter_records(text, info)
    rejections = Rejections()
    rejected_by_reason, rejected_examples, missing = rejections.by_reason, rejections.examples, rejections.missing
    reject = rejections.add

    if options.task == "chat" and info.format != "jsonl":
        raise DatasetFileError(
            f"Chat datasets are JSONL (one conversation per line); this file is {info.format.upper()}.",
            code="chat_needs_jsonl", field="task")
    first = None
    for item in records:  # the first record fixes the columns (JSONL keys may grow later)
        if isinstance(item, Rejected):
            reject(item.line, item.reason)
            continue
        first = item
        break
    if first is None:
        if rejected_by_reason:
            raise rejections.no_valid_rows()
        raise DatasetFileError("The file has a header but no data rows.", code="no_rows")
    if options.task == "chat" or (options.task is None and info.format == "jsonl" and looks_like_chat(first.values)):
        return run_chat_preflight(_chain(first, records), info, options, workdir, rejections, started=started,
                                  measure=chat_measure)
    buffered: list = []  # rows read ahead to choose the label column; processed first below
    sampled: list[dict] = []

    def sample() -> list[dict]:
        if sampled:
            return sampled
        chars = 0
        for item in records:
            buffered.append(item)
            if isinstance(item, Record):
                chars += sum(len(v) for v in item.values.values() if isinstance(v, str))
            if len(buffered) >= LABEL_SAMPLE_ROWS - 1 or chars > LABEL_SAMPLE_CHARS:
                break
        sampled.extend([first.values] + [item.values for item in buffered if isinstance(item, Record)])
        return sampled

    task, mapping, label_choice = resolve_mapping(info.columns or list(first.values), options, sample)
    formula_cells, formula_example = 0, None

    all_path = os.path.join(workdir, "all.jsonl")
    label_counts, label_ids = Counter(), {}
    keys, labels, lines, given = array("Q"), array("i"), array("I"), bytearray()
    total = sum(rejected_by_reason.values())
    head: list[dict] = []

    with open(all_path, "w", encoding="utf-8") as out:
        for item in _chain(first, buffered, records):
            total += 1
            if isinstance(item, Rejected):
                reject(item.line, item.reason)
                continue
            row, problem = normalize_row(item, task, mapping)
            if problem:
                reject(item.line, problem)
                continue
            for column, cell in _cells(row, task, mapping):
                if looks_like_formula(cell):
                    formula_cells += 1
                    formula_example = formula_example or (item.line, column)
            row_labels = _labels_of(row, task)
            label_counts.update(row_labels)
            keys.append(_text_key(row, task))
            labels.append(label_ids.setdefault("\x1f".join(row_labels), len(label_ids)))
            lines.append(item.line)
            given.append(SPLIT_CODES[row.pop("split", None)])
            if len(head) < HEAD_ROWS:
                head.append(row)
            out.write(json.dumps(row, ensure_ascii=False) + "\n")
            if total % 50_000 == 0:
                _check_rejection_budget(total, rejected_by_reason, rejected_examples, options)

    accepted = len(keys)
    if accepted == 0:
        first_bad = rejected_examples[0] if rejected_examples else {"line": "?", "reason": "?"}
        raise DatasetFileError(
            f"No valid rows: every row was rejected (first: line {first_bad['line']}: {first_bad['reason']}).",
            code="no_valid_rows",
        )
    _check_rejection_budget(total, rejected_by_reason, rejected_examples, options)

    key_arr = np.frombuffer(keys, dtype=np.uint64)
    label_arr = np.frombuffer(labels, dtype=np.int32)
    line_arr = np.frombuffer(lines, dtype=np.uint32)
    given_arr = np.frombuffer(bytes(given), dtype=np.uint8)
    duplicates = _duplicates(key_arr, label_arr, line_arr)
    is_validation, split_info = _assign_split(key_arr, label_arr, given_arr, task, options)
    leaked = int(np.intersect1d(key_arr[~is_validation], key_arr[is_validation]).size)

    train_path, validation_path = os.path.join(workdir, "train.jsonl"), os.path.join(workdir, "validation.jsonl")
    counts = Counter()
    with open(all_path, encoding="utf-8") as src, open(train_path, "w", encoding="utf-8") as tr, \
            open(validation_path, "w", encoding="utf-8") as va:
        for line, to_validation in zip(src, is_validation):
            (va if to_validation else tr).write(line)
            counts["validation" if to_validation else "train"] += 1
    os.remove(all_path)
    parse_seconds = time.perf_counter() - started

    label_report = _label_report(label_counts, task)
    report = {
        "format": info.format, "compressed": info.compressed, "encoding": info.encoding,
        "encoding_detection": dict(info.encoding_detection),
        "warnings": list(info.warnings) + label_report.pop("warnings"),
        "task": task, "column_mapping": mapping, "columns": info.columns,
        "rows": {"total": total, "accepted": accepted, "rejected": sum(rejected_by_reason.values()),
                 "train": counts["train"], "validation": counts["validation"]},
        "rejected": {"by_reason": dict(rejected_by_reason.most_common()), "examples": rejected_examples[:MAX_REJECTED_EXAMPLES]},
        "missing": dict(missing),
        "labels": label_report,
        "duplicates": duplicates,
        "leakage": {"texts_in_both_splits": leaked},
        "split": split_info,
    }
    if label_choice:
        report["label_choice"] = label_choice
        report["warnings"].append(_label_choice_warning(label_choice))
    report["formula_like_cells"] = formula_cells
    if formula_cells:
        line, column = formula_example
        report["warnings"].append(
            f"{formula_cells} cell(s) begin with =, +, -, @, a tab or a carriage return (first: line {line}, column "
            f"'{column}'). They are kept as ordinary text; Lathe's CSV downloads prefix them with an apostrophe so a "
            "spreadsheet shows them instead of running them as formulas.")
    if duplicates["exact_rows"]:
        report["warnings"].append(f"{duplicates['exact_rows']} exact duplicate row(s); they add weight without adding information.")
    if duplicates["conflicting_labels"]:
        report["warnings"].append(f"{duplicates['conflicting_labels']} row(s) repeat a text with a different label.")
    if leaked:
        report["warnings"].append(f"{leaked} text(s) appear in both train and validation: validation scores will be optimistic.")

    tokenize_started = time.perf_counter()
    report["lengths"] = length_statistics(train_path, validation_path, task, options.max_length, tokenizer, tokenizer_name)
    if report["lengths"]["truncated_share"] > 0.05:
        report["warnings"].append(
            f"{report['lengths']['truncated_share']:.0%} of rows are longer than max_length {options.max_length} and would be truncated."
        )
    report["timings"] = {"parse_validate_seconds": round(parse_seconds, 4),
                         "tokenize_seconds": round(time.perf_counter() - tokenize_started, 4)}
    return PreflightResult(report, train_path, validation_path, counts["train"], counts["validation"], head)


def _chain(first, *rest):
    yield first
    for items in rest:
        yield from items


def _cells(row: dict, task: str, mapping: dict):
    """(column, text) for every stored cell of a normalized row."""
    for fieldname in TASK_FIELDS[task]:
        value = row[fieldname]
        for cell in value if isinstance(value, list) else (value,):
            yield mapping[fieldname], cell


def _check_rejection_budget(total, rejected_by_reason, examples, options, what: str = "rows"):
    rejected = sum(rejected_by_reason.values())
    if total and rejected / total > options.max_rejected_fraction and rejected > 1:
        listed = "; ".join(f"line {e['line']}: {e['reason']}" for e in examples[:5])
        raise DatasetFileError(
            f"{rejected} of {total} {what} ({rejected / total:.0%}) are invalid, more than the "
            f"{options.max_rejected_fraction:.0%} allowed. First problems: {listed}.",
            code="too_many_invalid_rows",
        )


def _duplicates(keys, labels, lines) -> dict:
    order = np.lexsort((lines, labels, keys))  # by text, then label, then position
    k, lab = keys[order], labels[order]
    same_text = k[1:] == k[:-1]
    exact = same_text & (lab[1:] == lab[:-1])
    conflicting = same_text & (lab[1:] != lab[:-1])
    examples = sorted(int(x) for x in lines[order[1:][exact]][:20])
    return {"exact_rows": int(exact.sum()), "conflicting_labels": int(conflicting.sum()),
            "examples": [{"line": x} for x in examples]}


def _assign_split(keys, labels, given, task, options):
    """A boolean mask: True for validation rows."""
    if given.any():
        return given == SPLIT_CODES["validation"], {"source": "given"}
    fraction = options.validation_fraction
    if not 0 < fraction < 0.5:
        raise DatasetFileError("validation_fraction must be between 0 and 0.5.", code="invalid", field="validation_fraction")
    # Identical texts move together, so carving never leaks; groups are
    # stratified by label (their first row's) and shuffled with the seed.
    unique_keys, first_index, group_of_row = np.unique(keys, return_index=True, return_inverse=True)
    stratified = task in ("text_classification", "text_pair_classification")
    group_label = labels[first_index] if stratified else np.zeros(len(unique_keys), dtype=np.int32)
    group_size = np.bincount(group_of_row, minlength=len(unique_keys))
    rng = np.random.default_rng(options.seed)
    validation_groups = np.zeros(len(unique_keys), dtype=bool)
    for label in np.unique(group_label):
        members = np.flatnonzero(group_label == label)
        if len(members) < 2:
            continue  # a lone text stays in train: the model must see each label
        members = members[rng.permutation(len(members))]
        want = round(int(group_size[members].sum()) * fraction)
        taken = np.cumsum(group_size[members])
        chosen = members[: int(np.searchsorted(taken, want, side="left")) + (1 if want else 0)]
        validation_groups[chosen[: max(0, min(len(chosen), len(members) - 1))]] = True
    return validation_groups[group_of_row], {
        "source": "carved", "validation_fraction": fraction, "seed": options.seed,
        "stratified_by": "label" if task in ("text_classification", "text_pair_classification") else None,
        "duplicates_kept_together": True}


def _label_report(counts: Counter, task: str) -> dict:
    warnings = []
    most, least = (counts.most_common(1)[0][1], min(counts.values())) if counts else (0, 0)
    ratio = round(most / least, 2) if least else None
    if len(counts) < 2:
        warnings.append("Only one label: a classifier needs at least two.")
    if ratio and ratio > IMBALANCE_RATIO_WARNING:
        warnings.append(f"Labels are imbalanced: the most frequent has {ratio:.0f}× the examples of the rarest.")
    rare = sorted(label for label, n in counts.items() if n < MIN_EXAMPLES_PER_LABEL)
    if rare:
        warnings.append(f"{len(rare)} label(s) have fewer than {MIN_EXAMPLES_PER_LABEL} examples: {', '.join(rare[:10])}.")
    return {"count": len(counts), "counts": dict(sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))),
            "imbalance_ratio": ratio, "warnings": warnings}


def _iter_texts(paths, task):
    for path in paths:
        with open(path, encoding="utf-8") as fh:
            for line in fh:
                row = json.loads(line)
                if task == "text_pair_classification":
                    yield (row["text_a"], row["text_b"])
                elif task == "token_classification":
                    yield row["tokens"]
                else:
                    yield row["text"]


def length_statistics(train_path, validation_path, task, max_length, tokenizer=None, tokenizer_name=None) -> dict:
    """Token lengths with the chosen base model's tokenizer (special tokens
    included, no truncation), or whitespace words when none is chosen."""
    lengths, batch = [], []

    def flush():
        if not batch:
            return
        if tokenizer is None:
            for item in batch:
                words = item if isinstance(item, list) else " ".join(item if isinstance(item, tuple) else [item]).split()
                lengths.append(len(words))
        elif task == "text_pair_classification":
            enc = tokenizer([a for a, _ in batch], [b for _, b in batch], truncation=False, add_special_tokens=True)
            lengths.extend(len(ids) for ids in enc["input_ids"])
        else:
            enc = tokenizer(batch, truncation=False, add_special_tokens=True, is_split_into_words=task == "token_classification")
            lengths.extend(len(ids) for ids in enc["input_ids"])
        batch.clear()

    for item in _iter_texts([train_path, validation_path], task):
        batch.append(item)
        if len(batch) >= 1024:
            flush()
    flush()
    lengths.sort()
    n = len(lengths)

    def percentile(p):
        return lengths[min(n - 1, max(0, math.ceil(p / 100 * n) - 1))] if n else 0

    top = lengths[-1] if n else 0
    width = max(1, math.ceil((top + 1) / HISTOGRAM_BINS))
    edges = [i * width for i in range(HISTOGRAM_BINS + 1)]
    histogram = [0] * HISTOGRAM_BINS
    for value in lengths:
        histogram[min(HISTOGRAM_BINS - 1, value // width)] += 1
    return {
        "unit": "tokens" if tokenizer is not None else "words",
        "tokenizer": tokenizer_name if tokenizer is not None else None,
        "max_length": max_length, "count": n,
        "mean": round(sum(lengths) / n, 2) if n else 0, "p50": percentile(50), "p95": percentile(95), "max": top,
        "truncated_share": round(sum(1 for v in lengths if v > max_length) / n, 4) if n else 0,
        "histogram": {"edges": edges, "counts": histogram},
    }


# --- chat datasets (corpora/chat.py checks each line) ------------------------------------------
# Every line checked, rejected lines reported with their number and reason, exact duplicate
# conversations found, a seeded split of whole conversations, token statistics with a base model's
# chat template when one is given.


@dataclass
class ChatMeasure:
    """What measures a chat dataset's tokens: a loaded tokenizer, the template to
    apply (None: the tokenizer's own), the model's context, and what the report
    says about them ({"base_model": slug, "base_model_name": ..., "chat_template": "model"|"default"}).
    With no tokenizer, `unavailable` says why and lengths are counted in words."""

    tokenizer: object = None
    template: str | None = None
    context_length: int | None = None
    about: dict = field(default_factory=dict)
    unavailable: str | None = None
    max_length: int | None = None  # the measuring model's default, when the upload named none
    warnings: list = field(default_factory=list)


def _words_lengths(words: list[int], max_length: int) -> dict:
    words = sorted(words)
    n = len(words)
    top = words[-1] if n else 0
    width = max(1, -(-(top + 1) // HISTOGRAM_BINS))
    counts = [0] * HISTOGRAM_BINS
    for value in words:
        counts[min(HISTOGRAM_BINS - 1, value // width)] += 1

    def pct(p):
        return words[min(n - 1, max(0, -(-p * n // 100) - 1))] if n else 0

    return {"unit": "words", "tokenizer": None, "max_length": max_length, "count": n,
            "mean": round(sum(words) / n, 2) if n else 0, "p50": pct(50), "p95": pct(95), "max": top,
            "truncated_share": 0, "histogram": {"edges": [i * width for i in range(HISTOGRAM_BINS + 1)], "counts": counts}}


def _lengths_from_tokens(tokens: dict) -> dict:
    """The token statistics in the shape of every report's `lengths` (charts, estimates)."""
    return {"unit": "tokens", "tokenizer": tokens.get("base_model"), "max_length": tokens["truncated_at"],
            "count": tokens["conversations"], "mean": tokens["mean"], "p50": tokens["p50"], "p95": tokens["p95"],
            "max": tokens["max"], "truncated_share": tokens["truncated_share"], "histogram": tokens["histogram"]}


def run_chat_preflight(records, info: FileInfo, options: PreflightOptions, workdir: str, rejections: Rejections, *,
                       started: float, measure: ChatMeasure | None = None) -> PreflightResult:
    """`records`: the file's Record/Rejected items (rejections already holds those
    read before the first record). `measure`: a ChatMeasure, or a callable making
    one (called once the lines are checked, so a file that is not chat, or is
    refused, loads no tokenizer). Memory per conversation is 13 bytes (key, line, given split) plus
    its word count; conversations stream to disk."""
    mapping = {k: v for k, v in (options.column_mapping or {}).items() if v}
    if mapping:
        name = next(iter(mapping))
        raise DatasetFileError(
            f"Column names ({name}_column) do not apply to chat datasets: each line holds 'messages', or 'prompt' and "
            "'completion'.", code="invalid", field=f"{name}_column")
    all_path = os.path.join(workdir, "all.jsonl")
    keys, lines, given = array("Q"), array("I"), bytearray()
    words: list[int] = []
    roles, message_counts = Counter(), Counter()
    from_prompt_completion = weighted = with_system = 0
    head: list[dict] = []
    total = rejections.count

    with open(all_path, "w", encoding="utf-8") as out:
        for item in records:
            total += 1
            if isinstance(item, Rejected):
                rejections.add(item.line, item.reason)
                continue
            conversation, split, problem = normalize_conversation(item.values)
            if problem:
                rejections.add(item.line, problem.reason, problem.detail)
                continue
            messages = conversation["messages"]
            roles.update(m["role"] for m in messages)
            message_counts[len(messages)] += 1
            weighted += sum(1 for m in messages if "weight" in m)
            with_system += messages[0]["role"] == "system"
            from_prompt_completion += "prompt" in item.values
            keys.append(conversation_key(conversation))
            lines.append(item.line)
            given.append(SPLIT_CODES[split])
            words.append(conversation_words(conversation))
            if len(head) < HEAD_ROWS:
                head.append(conversation)
            out.write(json.dumps(conversation, ensure_ascii=False) + "\n")
            if total % 50_000 == 0:
                rejections.check_budget(total, options, "lines")

    accepted = len(keys)
    if accepted == 0:
        raise rejections.no_valid_rows("line")
    rejections.check_budget(total, options, "lines")

    key_arr = np.frombuffer(keys, dtype=np.uint64)
    line_arr = np.frombuffer(lines, dtype=np.uint32)
    given_arr = np.frombuffer(bytes(given), dtype=np.uint8)
    no_labels = np.zeros(accepted, dtype=np.int32)
    duplicates = _duplicates(key_arr, no_labels, line_arr)
    duplicates = {"exact_rows": duplicates["exact_rows"], "exact_conversations": duplicates["exact_rows"],
                  "conflicting_labels": 0, "examples": duplicates["examples"]}
    is_validation, split_info = _assign_split(key_arr, no_labels, given_arr, "chat", options)
    split_info["whole_conversations"] = True
    leaked = int(np.intersect1d(key_arr[~is_validation], key_arr[is_validation]).size)
    parse_seconds = time.perf_counter() - started

    tokenize_started = time.perf_counter()
    if callable(measure):  # only now: a file refused above loads no tokenizer
        measure = measure()
    if measure is not None and measure.max_length:
        options.max_length = measure.max_length
    counter = None
    if measure is not None and measure.tokenizer is not None:
        counter = ChatTokenCounter(measure.tokenizer, options.max_length, measure.context_length, measure.template)
    train_path, validation_path = os.path.join(workdir, "train.jsonl"), os.path.join(workdir, "validation.jsonl")
    counts = Counter()
    with open(all_path, encoding="utf-8") as src, open(train_path, "w", encoding="utf-8") as tr, \
            open(validation_path, "w", encoding="utf-8") as va:
        for text, to_validation, line in zip(src, is_validation, line_arr):
            split = "validation" if to_validation else "train"
            (va if to_validation else tr).write(text)
            counts[split] += 1
            if counter is not None:
                counter.add(json.loads(text), split=split, where=f"line {int(line)}")
    os.remove(all_path)

    warnings = list(info.warnings) + (list(measure.warnings) if measure is not None else [])
    tokens = counter.report(**measure.about) if counter is not None else None
    if tokens is not None:
        lengths = _lengths_from_tokens(tokens)
        warnings.extend(warnings_for(tokens))
    else:
        lengths = _words_lengths(words, options.max_length)
    if duplicates["exact_rows"]:
        warnings.append(f"{duplicates['exact_rows']} exact duplicate conversation(s); they add weight without adding "
                        "information.")
    if leaked:
        warnings.append(f"{leaked} conversation(s) appear in both train and validation: validation scores will be "
                        "optimistic.")
    if counts["validation"] == 0:
        warnings.append("No conversation went to validation: the job cannot report validation loss. Add conversations "
                        "or mark some with \"split\": \"validation\".")
    turns = sorted(message_counts.elements())
    report = {
        "format": info.format, "compressed": info.compressed, "encoding": info.encoding,
        "encoding_detection": dict(info.encoding_detection), "warnings": warnings,
        "task": "chat", "column_mapping": {}, "columns": info.columns,
        "rows": {"total": total, "accepted": accepted, "rejected": rejections.count,
                 "train": counts["train"], "validation": counts["validation"]},
        "rejected": rejections.report(), "missing": dict(rejections.missing),
        "labels": {"count": 0, "counts": {}, "imbalance_ratio": None},
        "conversations": {
            "count": accepted, "messages": sum(roles.values()), "by_role": {r: roles.get(r, 0) for r in ("system", "user", "assistant")},
            "with_system_prompt": with_system, "from_prompt_completion": from_prompt_completion,
            "weighted_assistant_messages": weighted,
            "messages_per_conversation": {"p50": turns[len(turns) // 2], "max": turns[-1]},
        },
        "duplicates": duplicates,
        "leakage": {"texts_in_both_splits": leaked},
        "split": split_info,
        "lengths": lengths,
        "tokens": tokens,
        "tokens_unavailable": None if tokens is not None else (
            (measure.unavailable if measure is not None else None) or "no chat base model measured this upload"),
        "formula_like_cells": 0,
        "timings": {"parse_validate_seconds": round(parse_seconds, 4),
                    "tokenize_seconds": round(time.perf_counter() - tokenize_started, 4)},
    }
    return PreflightResult(report, train_path, validation_path, counts["train"], counts["validation"], head)
