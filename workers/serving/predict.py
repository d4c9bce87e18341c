"""Batch predictions (the `predict` job kind): one delivered model over a file of inputs, chunk by chunk.

- Inputs: JSONL or CSV. Each row's id is its `id` column/key when the file has one, else its row number
  (1-based, in file order). Classifiers read `text` (pairs: `text_a` and `text_b`) and an optional
  `label`; chat models read `messages` (role/content, JSONL): a conversation that ends on an assistant
  message is answered from the turns before it and that message is the reference.
- Chunks: rows [k·chunk_rows, (k+1)·chunk_rows) are predicted, written to the job's checkpoint folder as
  `predict/chunk-<k>.json` (a temporary file renamed into place: a chunk is whole or absent) and reported
  as a checkpoint (`step` = rows done). A later attempt — another worker after this one was lost — reads
  the complete chunks back (same input file, same chunk size) and goes on after the last of them: no
  row predicted twice in the output, none skipped.
- Cancel, budget, spend cap: `reporter.should_stop()` is polled between batches; a lost lease stops
  without writing anything further (`confirm_lease` before each chunk).
- Outputs (artifacts): predictions.jsonl, predictions.csv (every cell through workers/csv_safe: formula
  leaders neutralised), predict_report.json, and for labelled classifier inputs confusion_matrix.svg.
  The report: rows, throughput, and with labels/references the metrics (accuracy, macro-F1, per-label
  precision/recall and the confusion matrix; exact match and token-F1 for chat) and the worst examples.

Django-free: the platform stages the inputs and the model (jobs/kind_runners.py)."""
from __future__ import annotations

import csv
import hashlib
import io
import json
import os
import time
from dataclasses import dataclass

from ..csv_safe import write_csv
from ..reporting import Reporter
from . import metrics

CLASSIFIER, CHAT = "classifier", "chat"
CHUNK_FOLDER = "predict"
MAX_ID_CHARS = 200
MAX_CELL_CHARS = 100_000
ROLES = ("system", "user", "assistant")


class InputError(ValueError):
    """A row of the input file that cannot be predicted: the message names its line and field."""

    def __init__(self, message: str, *, line: int | None = None, field: str = "file"):
        super().__init__(message)
        self.line, self.field = line, field


@dataclass
class PredictSpec:
    model_folder: str
    input_file: str
    output_dir: str
    checkpoint_dir: str
    task: str  # text_classification | text_pair_classification | chat
    batch_size: int = 32
    # Greedy replies generated together: 5.3x batch 1's replies/s for SmolLM2-135M on 2 cores, 32 only 11 %
    # more (bench/chat_batched_replies.py), and a bigger model's key/value cache grows with the batch.
    chat_batch_size: int = 16
    max_new_tokens: int = 128
    chunk_rows: int = 256
    threads: int | None = None
    worst_examples: int = 20


@dataclass
class InputRow:
    id: str
    input: dict | list  # classifier: {"text"} or {"text_a", "text_b"}; chat: the messages to answer
    expected: str | None  # the label, or the reference reply


# --- reading the inputs ----------------------------------------------------------------------------------

def _text(value, *, line: int, field: str, required: bool = True) -> str | None:
    if value is None or (isinstance(value, str) and not value.strip()):
        if required:
            raise InputError(f"Line {line}: {field} is missing.", line=line, field=field)
        return None
    if isinstance(value, bool) or not isinstance(value, (str, int, float)):
        raise InputError(f"Line {line}: {field} must be text, found {type(value).__name__}.", line=line, field=field)
    value = str(value)
    if "\x00" in value:
        raise InputError(f"Line {line}: {field} holds a NUL byte.", line=line, field=field)
    if len(value) > MAX_CELL_CHARS:
        raise InputError(f"Line {line}: {field} is longer than {MAX_CELL_CHARS:,} characters.", line=line, field=field)
    return value


def _messages(value, *, line: int) -> tuple[list[dict], str | None]:
    """(the turns to answer, the reference: the last assistant message when the conversation ends on one)."""
    if not isinstance(value, list) or not value:
        raise InputError(f"Line {line}: messages must be a non-empty list of {{role, content}}.", line=line,
                         field="messages")
    turns = []
    for i, message in enumerate(value):
        if not isinstance(message, dict) or message.get("role") not in ROLES:
            raise InputError(f"Line {line}: messages[{i}] needs a role ({', '.join(ROLES)}) and a content.",
                             line=line, field="messages")
        turns.append({"role": message["role"],
                      "content": _text(message.get("content"), line=line, field=f"messages[{i}].content") or ""})
    reference = None
    if turns[-1]["role"] == "assistant":
        reference = turns.pop()["content"]
    if not turns or turns[-1]["role"] == "system":
        raise InputError(f"Line {line}: messages has no user turn to answer.", line=line, field="messages")
    return turns, reference


def _row(values: dict, *, line: int, number: int, task: str) -> InputRow:
    raw_id = values.get("id")
    row_id = _text(raw_id, line=line, field="id", required=False) if raw_id not in (None, "") else None
    if row_id is not None and len(row_id) > MAX_ID_CHARS:
        raise InputError(f"Line {line}: id is longer than {MAX_ID_CHARS} characters.", line=line, field="id")
    row_id = row_id if row_id is not None else str(number)
    if task == "chat":
        turns, reference = _messages(values.get("messages"), line=line)
        return InputRow(row_id, turns, reference)
    fields = ("text_a", "text_b") if task == "text_pair_classification" else ("text",)
    given = {f: _text(values.get(f), line=line, field=f) for f in fields}
    return InputRow(row_id, given, _text(values.get("label"), line=line, field="label", required=False))


def read_inputs(path: str, *, task: str) -> list[InputRow]:
    """Every row of a JSONL or CSV file (told apart by the name: .csv is CSV), checked; an InputError names
    the first bad line and field. Ids must be unique."""
    rows: list[InputRow] = []
    with open(path, "rb") as fh:
        data = fh.read()
    if b"\x00" in data:
        line = data[:data.index(b"\x00")].count(b"\n") + 1
        raise InputError(f"Line {line}: the file holds a NUL byte (is it a text file?).", line=line)
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = data[:exc.start].count(b"\n") + 1
        raise InputError(f"Line {line}: the file is not UTF-8 (byte offset {exc.start}).", line=line) from None
    if path.endswith(".csv"):
        if task == "chat":
            raise InputError("Chat inputs are JSONL lines with messages, not CSV.", field="file")
        try:
            reader = csv.DictReader(io.StringIO(text, newline=""), strict=True)
            for number, values in enumerate(reader, 1):
                if None in values:
                    raise InputError(f"Line {reader.line_num}: more cells than the header has columns.",
                                     line=reader.line_num)
                rows.append(_row(values, line=reader.line_num, number=number, task=task))
        except csv.Error as exc:  # raised while reading the line after the last one read whole
            line = reader.line_num + 1
            raise InputError(f"Line {line}: not valid CSV ({exc}).", line=line) from None
    else:
        number = 0
        for line, raw in enumerate(text.split("\n"), 1):  # not splitlines(): U+2028, NEL are text inside a JSON string
            if not raw.strip():
                continue
            number += 1
            try:
                values = json.loads(raw)
            except ValueError as exc:
                raise InputError(f"Line {line}: not valid JSON ({exc.msg}).", line=line) from None
            except RecursionError:  # nesting deeper than the parser goes: no real input looks like that
                raise InputError(f"Line {line}: JSON nested too deeply.", line=line) from None
            if not isinstance(values, dict):
                raise InputError(f"Line {line}: each line must be a JSON object.", line=line)
            rows.append(_row(values, line=line, number=number, task=task))
    seen: set[str] = set()
    for row in rows:
        if row.id in seen:
            raise InputError(f"The id {row.id!r} appears more than once; ids must be unique.", field="id")
        seen.add(row.id)
    return rows


def detect_task(path: str) -> str:
    """What an input file holds, from its first row: chat (JSONL lines with messages), text pairs (text_a and
    text_b) or texts; read_inputs then checks every row against it."""
    with open(path, "rb") as fh:
        head = fh.read(1 << 20).decode("utf-8-sig", errors="replace")
    if path.endswith(".csv"):
        header = next(csv.reader(io.StringIO(head.split("\n", 1)[0])), [])
        return "text_pair_classification" if {"text_a", "text_b"} <= set(header) else "text_classification"
    first = next((line for line in head.split("\n") if line.strip()), "")
    try:
        values = json.loads(first)
    except (ValueError, RecursionError):
        return "text_classification"  # read_inputs names the line
    if isinstance(values, dict) and "messages" in values:
        return "chat"
    if isinstance(values, dict) and "text_a" in values:
        return "text_pair_classification"
    return "text_classification"


def file_sha256(path: str) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


# --- chunks (the resume points) ---------------------------------------------------------------------------

def chunk_path(checkpoint_dir: str, index: int) -> str:
    return os.path.join(checkpoint_dir, CHUNK_FOLDER, f"chunk-{index:06d}.json")


def complete_chunks(spec: PredictSpec, *, input_sha256: str, total: int) -> list[list[dict]]:
    """The chunks a previous attempt finished, in order, up to the first missing or foreign one (another
    input file or chunk size: the job's spec is fixed, so that is only a stale folder)."""
    done = []
    for index in range(0, (total + spec.chunk_rows - 1) // spec.chunk_rows):
        path = chunk_path(spec.checkpoint_dir, index)
        try:
            with open(path, encoding="utf-8") as fh:
                chunk = json.load(fh)
        except (OSError, ValueError):
            break
        expected = min(spec.chunk_rows, total - index * spec.chunk_rows)
        if (chunk.get("input_sha256") != input_sha256 or chunk.get("chunk_rows") != spec.chunk_rows
                or chunk.get("index") != index or len(chunk.get("rows") or []) != expected):
            break
        done.append(chunk["rows"])
    return done


def _write_chunk(spec: PredictSpec, index: int, rows: list[dict], *, input_sha256: str) -> str:
    path = chunk_path(spec.checkpoint_dir, index)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    tmp = f"{path}.tmp"
    with open(tmp, "w", encoding="utf-8") as fh:
        json.dump({"input_sha256": input_sha256, "chunk_rows": spec.chunk_rows, "index": index, "rows": rows}, fh,
                  ensure_ascii=False)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)
    return path


# --- predicting ----------------------------------------------------------------------------------------------

def _classified(row: InputRow, answer) -> dict:
    out = {"id": row.id, "prediction": answer.label, "score": answer.score, "scores": answer.scores}
    if row.expected is not None:
        out.update(label=row.expected, correct=answer.label == row.expected)
    return out


def _replied(row: InputRow, answer) -> dict:
    out = {"id": row.id, "reply": answer.content, "finish_reason": answer.finish_reason,
           "prompt_tokens": answer.prompt_tokens, "completion_tokens": answer.completion_tokens}
    if row.expected is not None:
        out.update(reference=row.expected, exact_match=metrics.exact_match(answer.content, row.expected),
                   token_f1=metrics.token_f1(answer.content, row.expected))
    return out


def _predict_chunk(model, rows: list[InputRow], spec: PredictSpec, reporter: Reporter) -> list[dict] | str:
    """The chunk's output rows, in input order, or the reason to stop (polled between batches)."""
    out: list[dict] = []
    chat = model.kind == CHAT
    size = spec.chat_batch_size if chat else spec.batch_size
    for start in range(0, len(rows), size):
        reason = reporter.should_stop()
        if reason:
            return reason
        batch = rows[start:start + size]
        if chat:  # greedy replies, generated together (left-padded) as the runtime batches them
            answers = model.reply([r.input for r in batch], max_new_tokens=spec.max_new_tokens, batch_size=size)
            out.extend(_replied(r, a) for r, a in zip(batch, answers))
        else:
            answers = model.classify([r.input for r in batch], batch_size=size)
            out.extend(_classified(r, a) for r, a in zip(batch, answers))
    return out


def run_predict(spec: PredictSpec, reporter: Reporter) -> dict:
    """Predict every input, resuming after the last complete chunk; returns the report, or {"stopped": reason}."""
    from .runtime import load_model

    rows = read_inputs(spec.input_file, task=spec.task)
    if not rows:
        raise InputError("The input file has no rows.")
    model = load_model(spec.model_folder, threads=spec.threads)
    if (model.kind == CHAT) != (spec.task == "chat"):
        raise InputError(f"The model is a {model.kind} and the inputs are {spec.task}.", field="model")
    input_sha256, total = file_sha256(spec.input_file), len(rows)
    chunks = complete_chunks(spec, input_sha256=input_sha256, total=total)
    resumed = sum(len(c) for c in chunks)
    if resumed:
        reporter.event(level="info", message=f"Resumed after chunk {len(chunks)}: {resumed:,} of {total:,} rows were "
                                             "already predicted by an earlier attempt; they are not predicted again.")
    reporter.progress(step=resumed, total_steps=total, epoch=0.0)
    started, done = time.perf_counter(), resumed
    for index in range(len(chunks), (total + spec.chunk_rows - 1) // spec.chunk_rows):
        piece = rows[index * spec.chunk_rows:(index + 1) * spec.chunk_rows]
        predicted = _predict_chunk(model, piece, spec, reporter)
        if isinstance(predicted, str):
            reporter.event(level="warning", message=f"Stopped after {done:,} of {total:,} rows: {predicted}.")
            return {"stopped": predicted, "rows_done": done, "rows": total}
        if not reporter.confirm_lease():  # a worker frozen past its lease must not write its successor's chunks
            return {"stopped": "lease lost", "rows_done": done, "rows": total}
        path = _write_chunk(spec, index, predicted, input_sha256=input_sha256)
        chunks.append(predicted)
        done += len(predicted)
        reporter.checkpoint_saved(step=done, path=path, metrics=None, is_best=False)
        reporter.progress(step=done, total_steps=total, epoch=0.0)
    seconds = time.perf_counter() - started
    outputs = [row for chunk in chunks for row in chunk]
    report = build_report(outputs, family=model.kind, labels=list(model.labels), limit=spec.worst_examples,
                          inputs={row.id: _shown(row) for row in rows})
    report.update(rows=total, resumed_rows=resumed, predicted_rows=total - resumed,
                  predict_seconds=round(seconds, 3),
                  rows_per_second=round((total - resumed) / seconds, 2) if seconds > 0 and total > resumed else None,
                  variant=model.variant, task=spec.task)
    write_outputs(spec.output_dir, outputs, report, family=model.kind, labels=list(model.labels), reporter=reporter)
    return report


# --- the report and the files -------------------------------------------------------------------------------

def _shown(row: InputRow, limit: int = 500) -> str:
    """The input as the worst examples show it: the text (a pair: both, " / " between), a conversation's last turn."""
    if isinstance(row.input, list):
        text = row.input[-1]["content"]
    else:
        text = " / ".join(row.input[f] for f in ("text", "text_a", "text_b") if f in row.input)
    return text if len(text) <= limit else text[:limit - 1] + "…"


def build_report(outputs: list[dict], *, family: str, labels: list[str], limit: int,
                 inputs: dict[str, str] | None = None) -> dict:
    """Counts, and with labels/references the metrics and the worst examples (each with its `input`, shortened,
    when `inputs` maps ids to it)."""
    inputs = inputs or {}
    if family == CHAT:
        scored = [r for r in outputs if r.get("reference") is not None]
        report = {"family": CHAT, "labelled_rows": len(scored), "metrics": None, "worst": []}
        if scored:
            report["metrics"] = metrics.generation_report([r["reply"] for r in scored], [r["reference"] for r in scored])
            report["worst"] = [{**r, "input": inputs.get(r["id"])} for r in metrics.worst_generated(scored, limit)]
        report["finish_reasons"] = {reason: sum(r["finish_reason"] == reason for r in outputs)
                                    for reason in ("stop", "length")}
        return report
    scored = [r for r in outputs if r.get("label") is not None]
    report = {"family": CLASSIFIER, "labels": labels, "labelled_rows": len(scored), "metrics": None, "worst": [],
              "predicted_counts": {label: sum(r["prediction"] == label for r in outputs) for label in labels}}
    if scored:
        full = metrics.classification_report([r["prediction"] for r in scored], [r["label"] for r in scored], labels)
        report["metrics"] = {"accuracy": full["accuracy"], "macro_f1": full["macro_f1"], "rows": full["rows"]}
        report["per_label"], report["confusion"] = full["per_label"], full["confusion"]
        report["worst"] = [{**{k: v for k, v in r.items() if k != "scores"}, "input": inputs.get(r["id"])}
                           for r in metrics.worst_classified(scored, limit)]
    return report


def csv_header_and_rows(outputs: list[dict], *, family: str, labels: list[str]) -> tuple[list[str], list[list]]:
    labelled = any(("label" if family == CLASSIFIER else "reference") in r for r in outputs)
    if family == CHAT:
        header = ["id", "reply", "finish_reason", "prompt_tokens", "completion_tokens"]
        header += ["reference", "exact_match", "token_f1"] if labelled else []
        return header, [[r.get(h) for h in header] for r in outputs]
    header = ["id", "prediction", "score"] + [f"p({label})" for label in labels] + (["label", "correct"] if labelled else [])
    rows = [[r["id"], r["prediction"], r["score"], *[r["scores"].get(label) for label in labels],
             *([r.get("label"), r.get("correct")] if labelled else [])] for r in outputs]
    return header, rows


def write_outputs(output_dir: str, outputs: list[dict], report: dict, *, family: str, labels: list[str],
                  reporter: Reporter) -> None:
    os.makedirs(output_dir, exist_ok=True)
    jsonl = os.path.join(output_dir, "predictions.jsonl")
    with open(jsonl, "w", encoding="utf-8") as fh:
        for row in outputs:
            fh.write(json.dumps(row, ensure_ascii=False) + "\n")
    table = os.path.join(output_dir, "predictions.csv")
    header, rows = csv_header_and_rows(outputs, family=family, labels=labels)
    with open(table, "w", encoding="utf-8", newline="") as fh:
        fh.write("\ufeff")  # Excel reads UTF-8 only with it
        write_csv(fh, header, rows)
    files = [("predictions.jsonl", jsonl, "predictions"), ("predictions.csv", table, "predictions")]
    if report.get("confusion"):
        svg = os.path.join(output_dir, "confusion_matrix.svg")
        with open(svg, "w", encoding="utf-8") as fh:
            fh.write(metrics.confusion_svg(report["confusion"]["labels"], report["confusion"]["matrix"]))
        files.append(("confusion_matrix.svg", svg, "figure"))
    path = os.path.join(output_dir, "predict_report.json")
    with open(path, "w", encoding="utf-8") as fh:
        json.dump(report, fh, ensure_ascii=False, indent=1)
    files.append(("predict_report.json", path, "report"))
    for name, file, kind in files:
        reporter.artifact(name=name, path=file, kind=kind)
