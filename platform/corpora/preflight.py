"""Preflight: map columns, validate every row, gather the report, carve a
split, and write normalized JSONL — before a GPU second is spent.

Free of Django: takes an open text stream and returns a PreflightResult with the
report (a JSON-able dict) and the paths of the normalized train/validation files.
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


def run_preflight(text, info: FileInfo, options: PreflightOptions, workdir: str, tokenizer=None, tokenizer_name: str | None = None) -> PreflightResult:
    """Memory per row is 17 bytes (text hash, label id, line, given split),
    whatever the row's length: the rows themselves stream to disk."""
    started = time.perf_counter()
    records = iter_records(text, info)
    rejected_by_reason, rejected_examples, missing = Counter(), [], Counter()

    def reject(line: int, reason: str):
        rejected_by_reason[reason] += 1
        if reason.startswith("missing "):
            missing[reason[len("missing "):]] += 1
        if len(rejected_examples) < MAX_REJECTED_EXAMPLES:
            rejected_examples.append({"line": line, "reason": reason})

    first = None
    for item in records:  # the first record fixes the columns (JSONL keys may grow later)
        if isinstance(item, Rejected):
            reject(item.line, item.reason)
            continue
        first = item
        break
    if first is None:
        if rejected_by_reason:
            raise DatasetFileError(
                f"No valid rows: every row was rejected (first: line {rejected_examples[0]['line']}: {rejected_examples[0]['reason']}).",
                code="no_valid_rows", line=rejected_examples[0]["line"],
            )
        raise DatasetFileError("The file has a header but no data rows.", code="no_rows")
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


def _check_rejection_budget(total, rejected_by_reason, examples, options):
    rejected = sum(rejected_by_reason.values())
    if total and rejected / total > options.max_rejected_fraction and rejected > 1:
        listed = "; ".join(f"line {e['line']}: {e['reason']}" for e in examples[:5])
        raise DatasetFileError(
            f"{rejected} of {total} rows ({rejected / total:.0%}) are invalid, more than the "
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
    group_label = labels[first_index] if task != "token_classification" else np.zeros(len(unique_keys), dtype=np.int32)
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
        "stratified_by": "label" if task != "token_classification" else None, "duplicates_kept_together": True}


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
