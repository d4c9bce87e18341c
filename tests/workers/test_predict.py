"""workers/serving/predict.py: batch predictions chunk by chunk, checked against the model run directly
(an independent computation); resume after the last complete chunk; the CSV's formula escaping; the
evaluation report; hostile input files named by line and field. And workers/serving/metrics.py."""
from __future__ import annotations

import csv
import io
import json

import pytest
import torch

from tests.tiny_model import build_tiny_classifier, build_tiny_llama, chat_rows
from workers.reporting import MemoryReporter
from workers.serving import metrics
from workers.serving.predict import InputError, PredictSpec, chunk_path, read_inputs, run_predict

LABELS = ["card_arrival", "card_linking", "exchange_rate"]
TEXTS = ["When will my card arrive?", "How do I link my card?", "what exchange rate do you use", "hi",
         "=HYPERLINK(\"http://evil\")", "-2 cards", "@everyone rate?", "card card card", "is my card lost",
         "rates today", "link it", "arrive soon"]


@pytest.fixture(scope="module")
def classifier(tmp_path_factory):
    folder = tmp_path_factory.mktemp("clf")
    tokenizer, model = build_tiny_classifier(folder, LABELS)
    return folder, tokenizer, model


def direct(model, tokenizer, texts) -> list[list[float]]:
    with torch.inference_mode():
        out = []
        for text in texts:  # one at a time: no padding shared with the worker's batches
            batch = tokenizer([text], truncation=True, max_length=64, return_tensors="pt")
            out.append(torch.softmax(model(**batch).logits.float(), -1)[0].tolist())
    return out


def labelled_csv(path, *, with_ids=True):
    with open(path, "w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh)
        writer.writerow(["id", "text", "label"] if with_ids else ["text", "label"])
        for i, text in enumerate(TEXTS):
            label = LABELS[i % len(LABELS)]
            writer.writerow([f"row-{i}", text, label] if with_ids else [text, label])
    return path


def spec_for(folder, input_file, tmp_path, **options) -> PredictSpec:
    return PredictSpec(model_folder=str(folder), input_file=str(input_file), output_dir=str(tmp_path / "out"),
                       checkpoint_dir=str(tmp_path / "ckpt"), task="text_classification", **options)


class StopAfterChunks(MemoryReporter):
    """Cancels once `chunks` chunks have been reported as checkpoints."""

    def __init__(self, chunks: int):
        super().__init__()
        self.chunks = chunks

    def should_stop(self):
        return "cancelled" if len(self.checkpoints) >= self.chunks else None


def test_predictions_match_the_model_run_directly_and_the_report_is_right(classifier, tmp_path):
    folder, tokenizer, model = classifier
    spec = spec_for(folder, labelled_csv(tmp_path / "in.csv"), tmp_path, batch_size=3, chunk_rows=5)
    reporter = MemoryReporter()
    report = run_predict(spec, reporter)
    expected = direct(model, tokenizer, TEXTS)
    rows = [json.loads(line) for line in (tmp_path / "out" / "predictions.jsonl").read_text().splitlines()]
    assert [r["id"] for r in rows] == [f"row-{i}" for i in range(len(TEXTS))]
    for row, probabilities in zip(rows, expected):
        best = max(range(len(LABELS)), key=probabilities.__getitem__)
        assert row["prediction"] == LABELS[best]
        assert [row["scores"][label] for label in LABELS] == pytest.approx(probabilities, abs=1e-5)
    truth = [LABELS[i % len(LABELS)] for i in range(len(TEXTS))]
    predicted = [LABELS[max(range(len(LABELS)), key=p.__getitem__)] for p in expected]
    assert report["metrics"]["accuracy"] == pytest.approx(sum(p == t for p, t in zip(predicted, truth)) / len(TEXTS))
    matrix = report["confusion"]["matrix"]
    for i, true_label in enumerate(LABELS):
        for j, predicted_label in enumerate(LABELS):
            assert matrix[i][j] == sum(t == true_label and p == predicted_label for t, p in zip(truth, predicted))
    for entry in report["per_label"]:
        tp = sum(t == p == entry["label"] for t, p in zip(truth, predicted))
        assert entry["support"] == truth.count(entry["label"])
        assert entry["recall"] == pytest.approx(tp / truth.count(entry["label"]))
    # Worst first: the lowest probability given to the true label.
    true_scores = sorted(p[LABELS.index(t)] for p, t in zip(expected, truth))
    assert [w["label_score"] for w in report["worst"]] == pytest.approx(true_scores[:len(report["worst"])], abs=1e-5)
    # Chunks of 5 rows: 3 checkpoints, progress up to every row.
    assert [c["step"] for c in reporter.checkpoints] == [5, 10, 12]
    assert reporter.progress_calls[-1][:2] == (12, 12)
    assert {a["name"] for a in reporter.artifacts} == {"predictions.jsonl", "predictions.csv", "predict_report.json",
                                                        "confusion_matrix.svg"}
    assert report["resumed_rows"] == 0 and report["predicted_rows"] == 12


def test_the_csv_neutralises_formula_leading_cells(tmp_path):
    """Ids and labels (the cells that come from the customer's data) that a spreadsheet would run get an
    apostrophe; the JSONL keeps them as they are."""
    labels = ["=cmd|' /C calc'!A0", "@SUM(1)", "-2+3"]
    build_tiny_classifier(tmp_path / "model", labels)
    ids = ["=1+1", "+cmd", "-x", "@a", "\tTab", "ok"]
    (tmp_path / "in.jsonl").write_text("\n".join(json.dumps({"id": i, "text": f"text {n}", "label": labels[n % 3]})
                                                 for n, i in enumerate(ids)))
    run_predict(spec_for(tmp_path / "model", tmp_path / "in.jsonl", tmp_path), MemoryReporter())
    raw = (tmp_path / "out" / "predictions.csv").read_text(encoding="utf-8")
    assert raw.startswith("\ufeff")  # Excel reads UTF-8 with it
    table = list(csv.reader(io.StringIO(raw[1:])))
    header, rows = table[0], table[1:]
    assert header == ["id", "prediction", "score", *[f"p({label})" for label in labels], "label", "correct"]
    assert [r[0] for r in rows] == ["'=1+1", "'+cmd", "'-x", "'@a", "'\tTab", "ok"]
    for r in rows:
        assert r[1] in {"'" + label for label in labels} and r[-2] in {"'" + label for label in labels}
        assert float(r[2]) > 0 and r[-1] in ("true", "false")
    jsonl = [json.loads(line) for line in (tmp_path / "out" / "predictions.jsonl").read_text().splitlines()]
    assert [r["id"] for r in jsonl] == ids and {r["prediction"] for r in jsonl} <= set(labels)


def test_row_numbers_are_the_ids_without_an_id_column_and_no_labels_no_report(classifier, tmp_path):
    folder, _, _ = classifier
    (tmp_path / "in.jsonl").write_text("\n".join(json.dumps({"text": t}) for t in TEXTS[:4]) + "\n\n")
    report = run_predict(spec_for(folder, tmp_path / "in.jsonl", tmp_path), MemoryReporter())
    rows = [json.loads(line) for line in (tmp_path / "out" / "predictions.jsonl").read_text().splitlines()]
    assert [r["id"] for r in rows] == ["1", "2", "3", "4"]
    assert report["metrics"] is None and report["labelled_rows"] == 0 and "label" not in rows[0]
    assert not (tmp_path / "out" / "confusion_matrix.svg").exists()


def test_a_stopped_run_resumes_after_its_last_chunk_and_predicts_each_row_once(classifier, tmp_path):
    folder, tokenizer, model = classifier
    input_file = labelled_csv(tmp_path / "in.csv")
    first = StopAfterChunks(2)
    stopped = run_predict(spec_for(folder, input_file, tmp_path, batch_size=2, chunk_rows=4), first)
    assert stopped == {"stopped": "cancelled", "rows_done": 8, "rows": 12}
    assert not (tmp_path / "out" / "predictions.jsonl").exists()
    kept = chunk_path(str(tmp_path / "ckpt"), 0)
    before = open(kept).read()

    second = MemoryReporter()
    report = run_predict(spec_for(folder, input_file, tmp_path, batch_size=2, chunk_rows=4), second)
    assert report["resumed_rows"] == 8 and report["predicted_rows"] == 4
    assert any("Resumed after chunk 2" in message for _level, message in second.events)
    assert [c["step"] for c in second.checkpoints] == [12]  # only the last chunk was predicted again
    assert open(kept).read() == before
    rows = [json.loads(line) for line in (tmp_path / "out" / "predictions.jsonl").read_text().splitlines()]
    assert [r["id"] for r in rows] == [f"row-{i}" for i in range(len(TEXTS))]
    for row, probabilities in zip(rows, direct(model, tokenizer, TEXTS)):
        assert [row["scores"][label] for label in LABELS] == pytest.approx(probabilities, abs=1e-5)


def test_chunks_of_another_input_file_are_not_reused(classifier, tmp_path):
    folder, _, _ = classifier
    input_file = labelled_csv(tmp_path / "in.csv")
    run_predict(spec_for(folder, input_file, tmp_path, chunk_rows=4), StopAfterChunks(1))
    labelled_csv(tmp_path / "in.csv", with_ids=False)  # the same path, other content
    report = run_predict(spec_for(folder, input_file, tmp_path, chunk_rows=4), MemoryReporter())
    assert report["resumed_rows"] == 0


@pytest.fixture(scope="module")
def chat_model(tmp_path_factory):
    folder = build_tiny_llama(tmp_path_factory.mktemp("llama"))
    from transformers import AutoModelForCausalLM, AutoTokenizer

    return folder, AutoTokenizer.from_pretrained(folder), AutoModelForCausalLM.from_pretrained(folder).eval()


def test_chat_inputs_are_answered_and_scored_against_the_last_assistant_message(chat_model, tmp_path):
    folder, tokenizer, model = chat_model
    conversations = chat_rows()[:3] + [{"messages": [{"role": "user", "content": "Hello?"}]}]
    (tmp_path / "chat.jsonl").write_text("\n".join(json.dumps(c) for c in conversations))
    spec = PredictSpec(model_folder=str(folder), input_file=str(tmp_path / "chat.jsonl"), output_dir=str(tmp_path / "out"),
                       checkpoint_dir=str(tmp_path / "ckpt"), task="chat", max_new_tokens=6, chunk_rows=3)
    report = run_predict(spec, MemoryReporter())
    rows = [json.loads(line) for line in (tmp_path / "out" / "predictions.jsonl").read_text().splitlines()]
    assert [r["id"] for r in rows] == ["1", "2", "3", "4"]
    for row, conversation in zip(rows, conversations):
        turns = conversation["messages"]
        prompt = turns[:-1] if turns[-1]["role"] == "assistant" else turns
        ids = tokenizer.apply_chat_template(prompt, add_generation_prompt=True, tokenize=True)
        ids = list(ids["input_ids"] if hasattr(ids, "keys") else ids)
        with torch.inference_mode():
            output = model.generate(input_ids=torch.tensor([ids]), attention_mask=torch.ones(1, len(ids), dtype=torch.long),
                                    max_new_tokens=6, do_sample=False, pad_token_id=tokenizer.eos_token_id)
        assert row["reply"] == tokenizer.decode(output[0, len(ids):], skip_special_tokens=True).strip()
        if turns[-1]["role"] == "assistant":
            assert row["reference"] == turns[-1]["content"]
            assert row["token_f1"] == metrics.token_f1(row["reply"], turns[-1]["content"])
        else:
            assert "reference" not in row
    assert report["labelled_rows"] == 3
    assert report["metrics"]["exact_match"] == pytest.approx(sum(r["exact_match"] for r in rows[:3]) / 3)
    header = next(csv.reader(io.StringIO((tmp_path / "out" / "predictions.csv").read_text(encoding="utf-8-sig"))))
    assert header == ["id", "reply", "finish_reason", "prompt_tokens", "completion_tokens", "reference", "exact_match",
                      "token_f1"]


def test_a_model_of_the_other_family_is_refused(chat_model, tmp_path):
    folder, _, _ = chat_model
    (tmp_path / "in.jsonl").write_text(json.dumps({"text": "hello"}) + "\n")
    with pytest.raises(InputError, match="chat"):
        run_predict(spec_for(folder, tmp_path / "in.jsonl", tmp_path), MemoryReporter())


@pytest.mark.parametrize("name, content, task, line, field", [
    ("a.csv", b"text,label\nhello,a\n\"unterminated,b\n", "text_classification", 3, "file"),
    ("b.csv", b"text,label\nhello,a,extra\n", "text_classification", 2, "file"),
    ("c.csv", b"words,label\nhello,a\n", "text_classification", 2, "text"),
    ("d.jsonl", b'{"text": "ok"}\n{"text": "a\x00b"}\n', "text_classification", 2, "file"),
    ("e.jsonl", b'{"text": "ok"}\n{"text": \n', "text_classification", 2, "file"),
    ("f.jsonl", b'{"text": "ok"}\n[1, 2]\n', "text_classification", 2, "file"),
    ("g.jsonl", b'{"text": {"nested": 1}}\n', "text_classification", 1, "text"),
    ("h.jsonl", b'{"text_a": "x"}\n', "text_pair_classification", 1, "text_b"),
    ("i.jsonl", b'{"messages": [{"role": "assistant", "content": "hi"}]}\n', "chat", 1, "messages"),
    ("j.jsonl", b'{"messages": "hello"}\n', "chat", 1, "messages"),
    ("k.jsonl", b'{"messages": [{"role": "wizard", "content": "hi"}]}\n', "chat", 1, "messages"),
    ("l.jsonl", b'{"text": "x"}\n\xff\xfe\n', "text_classification", 2, "file"),
    ("m.csv", b"messages\nhi\n", "chat", None, "file"),
])
def test_hostile_input_files_are_named_by_line_and_field(tmp_path, name, content, task, line, field):
    path = tmp_path / name
    path.write_bytes(content)
    with pytest.raises(InputError) as caught:
        read_inputs(str(path), task=task)
    assert caught.value.line == line and caught.value.field == field
    if line is not None:
        assert f"Line {line}" in str(caught.value)


def test_line_separators_inside_json_strings_are_text(tmp_path):
    texts = ["a\u2028b", "c\x85d", "e\rf", "g\x0ch"]
    (tmp_path / "in.jsonl").write_text("\r\n".join(json.dumps({"text": t}, ensure_ascii=False) for t in texts) + "\n",
                                       encoding="utf-8")
    rows = read_inputs(str(tmp_path / "in.jsonl"), task="text_classification")
    assert [r.input["text"] for r in rows] == texts and [r.id for r in rows] == ["1", "2", "3", "4"]


def test_duplicate_ids_are_refused(tmp_path):
    (tmp_path / "d.jsonl").write_text('{"id": 1, "text": "a"}\n{"id": "1", "text": "b"}\n')
    with pytest.raises(InputError, match="more than once") as caught:
        read_inputs(str(tmp_path / "d.jsonl"), task="text_classification")
    assert caught.value.field == "id"


def test_classification_report_by_hand():
    report = metrics.classification_report(["a", "a", "b", "b", "a"], ["a", "b", "b", "c", "a"], ["a", "b"])
    assert report["confusion"] == {"labels": ["a", "b", "c"], "matrix": [[2, 0, 0], [1, 1, 0], [0, 1, 0]]}
    assert report["accuracy"] == pytest.approx(3 / 5)
    per = {p["label"]: p for p in report["per_label"]}
    assert per["a"]["precision"] == pytest.approx(2 / 3) and per["a"]["recall"] == 1.0
    assert per["b"]["precision"] == pytest.approx(1 / 2) and per["b"]["recall"] == pytest.approx(1 / 2)
    assert per["c"]["support"] == 1 and per["c"]["f1"] == 0.0
    # macro-F1 over a (0.8), b (0.5), c (0.0)
    assert report["macro_f1"] == pytest.approx((0.8 + 0.5 + 0.0) / 3)


def test_generation_report_and_the_worst_replies():
    report = metrics.generation_report(["Paris.", "the Rome", "Blue sky"], ["paris", "Rome.", "Green."])
    assert report["exact_match"] == pytest.approx(2 / 3) and report["token_f1"] == pytest.approx(2 / 3)
    rows = [{"id": str(i), "reference": "x", "token_f1": f, "exact_match": e} for i, (f, e) in
            enumerate([(0.5, 0.0), (0.0, 0.0), (1.0, 1.0)])]
    assert [r["id"] for r in metrics.worst_generated(rows, 2)] == ["1", "0"]


def test_the_confusion_picture_escapes_labels():
    svg = metrics.confusion_svg(["<script>alert(1)</script>", "b&c"], [[3, 1], [0, 2]])
    assert "<script>" not in svg and "&lt;script&gt;" in svg and "b&amp;c" in svg
    assert svg.startswith("<svg") and svg.count("<rect") == 4 and ">3<" in svg
