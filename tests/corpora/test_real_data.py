"""Real files that used to break or be refused: hostile JSONL rows and NUL bytes
are refused rows naming their line (never a 500), real label column names map,
formula-looking text is accepted (and neutralised on the way out, see
test_csv_export.py), and Western encodings round-trip their accents."""
import codecs
import csv
import io
import json
import random

import pytest

from corpora.models import Dataset, DatasetVersion

from .conftest import SLICE, stored_files

pytestmark = pytest.mark.django_db


def error_of(response, status):
    assert response.status_code == status, response.content
    return response.json()["error"]


def report_of(uploader, response):
    assert response.status_code == 201, response.content
    body = response.json()
    return uploader.client.get(f"/api/v1/datasets/{body['id']}/versions/1/report").json()["report"]


def all_rows(uploader, response) -> list[dict]:
    dataset_id = response.json()["id"]
    rows = []
    for split in ("train", "validation"):
        rows += uploader.client.get(f"/api/v1/datasets/{dataset_id}/versions/1/preview?split={split}&limit=100").json()["rows"]
    return rows


def good_jsonl_rows(n=60) -> list[str]:
    return [json.dumps({"text": f"I lost my card number {i}", "label": "lost" if i % 2 else "found"}) for i in range(n)]


# --- 1. hostile JSONL rows --------------------------------------------------------

HOSTILE_JSONL_LINES = {
    "nested 100,000 deep": ('{"text": "deep", "label": ' + "[" * 100_000 + "]" * 100_000 + "}", "nested too deeply"),
    "5,000-digit number": ('{"text": "big number", "label": ' + "7" * 5000 + "}",
                           "a number with 5,000 characters; at most 100 are accepted"),
    "NUL in a label": ('{"text": "nul label", "label": "po\\u0000sitive"}', "column 'label' contains a NUL character"),
    "NUL in a key": ('{"text": "nul key", "label": "a", "ex\\u0000tra": 1}', "a column name contains a NUL character"),
    "unpaired surrogate": ('{"text": "half an emoji \\ud83d", "label": "a"}', "column 'text' contains an unpaired surrogate"),
}


def test_hostile_jsonl_rows_are_refused_rows_naming_their_line(uploader):
    good = good_jsonl_rows()
    bad = [line for line, _ in HOSTILE_JSONL_LINES.values()]
    content = "\n".join(good[:30] + bad + good[30:]) + "\n"
    report = report_of(uploader, uploader("hostile.jsonl", content.encode()))
    expected = [{"line": 31 + i, "reason": reason} for i, (_, reason) in enumerate(HOSTILE_JSONL_LINES.values())]
    examples = report["rejected"]["examples"]
    assert [e["line"] for e in examples] == [e["line"] for e in expected]
    for example, wanted in zip(examples, expected):
        assert wanted["reason"] in example["reason"], example
    assert report["rows"]["accepted"] == 60 and report["rows"]["rejected"] == len(HOSTILE_JSONL_LINES)
    assert "\x00" not in json.dumps(report, ensure_ascii=False)  # PostgreSQL's jsonb refuses NUL


@pytest.mark.parametrize("case", sorted(HOSTILE_JSONL_LINES))
def test_a_file_of_only_a_hostile_jsonl_row_is_a_400_naming_line_1(uploader, media_root, case):
    line, reason = HOSTILE_JSONL_LINES[case]
    error = error_of(uploader("one.jsonl", (line + "\n").encode()), 400)
    assert error["code"] == "no_valid_rows" and "line 1: " in error["message"] and reason in error["message"]
    assert Dataset.objects.count() == 0 and stored_files(media_root) == []


def test_hostile_json_inside_a_csv_tokens_cell_is_a_refused_row(uploader):
    rows = [f'"[""Ada"", ""visits"", ""Paris{i}""]","[""B-PER"", ""O"", ""B-LOC""]"' for i in range(40)]
    deep = '"' + "[" * 50_000 + '"' + ',"[""O""]"'
    content = "tokens,tags\n" + "\n".join(rows[:20] + [deep] + rows[20:]) + "\n"
    report = report_of(uploader, uploader("ner.csv", content.encode()))
    assert report["rejected"]["examples"] == [{"line": 22, "reason": "tokens is not a JSON list (invalid JSON (nested too deeply))"}]


# --- 2. NUL anywhere in a CSV -------------------------------------------------------

def test_nul_after_the_first_64_kb_is_a_refused_row_naming_its_line(uploader):
    filler = "".join(f"an ordinary sentence number {i} about cards,{'a' if i % 2 else 'b'}\n" for i in range(2000))
    assert len(filler) > 64 * 1024
    content = "text,label\n" + filler + "a label with a nul,pos\x00itive\nnul in the\x00 text,a\n" + "last one,b\n"
    report = report_of(uploader, uploader("late-nul.csv", content.encode()))
    assert report["rejected"]["examples"] == [
        {"line": 2002, "reason": "column 'label' contains a NUL character (\\u0000)"},
        {"line": 2003, "reason": "column 'text' contains a NUL character (\\u0000)"},
    ]
    assert report["rows"]["accepted"] == 2001 and "pos\x00itive" not in report["labels"]["counts"]


# --- 3. label columns real corpora use ----------------------------------------------

def tweets(label_column="sentiment", n=40) -> str:
    moods = ["positive", "negative", "neutral"]
    return f"{label_column},confidence,text\n" + "".join(
        f"{moods[i % 3]},0.{i % 10}{i % 7},tweet number {i} about the flight\n" for i in range(n))


def test_a_tweet_corpus_with_a_sentiment_column_validates(uploader):
    response = uploader("tweets.csv", tweets().encode())
    version = response.json()["latest_version"]
    assert response.status_code == 201, response.content
    assert version["column_mapping"] == {"text": "text", "label": "sentiment"} and version["label_count"] == 3


LABEL_NAMES = ["sentiment", "Sentiment", "SENTIMENTS", "emotion", "Emotions", "topic", "topics", "intent", "Intents",
               "class", "classes", "target", "Targets", "category", "Categories", "label", "LABELS", "y", "Y", "tag",
               "tags", "answer", "Answers", "airline_sentiment"]


def test_label_column_names_map_in_any_case_and_plural(uploader):
    mapped = {}
    for name in LABEL_NAMES:
        response = uploader("t.csv", tweets(name).encode())
        assert response.status_code == 201, (name, response.content)
        mapped[name] = response.json()["latest_version"]["column_mapping"]["label"]
    assert mapped == {name: name for name in LABEL_NAMES}


def test_several_label_candidates_pick_the_one_with_few_values_and_say_so(uploader):
    content = "text,topic,category\n" + "".join(
        f"question {i} about my card,topic {i},{'cards' if i % 2 else 'transfers'}\n" for i in range(40))
    report = report_of(uploader, uploader("two.csv", content.encode()))
    assert report["column_mapping"] == {"text": "text", "label": "category"}
    assert report["label_choice"] == {"column": "category", "candidates": {"topic": 40, "category": 2}, "sampled_rows": 40}
    assert any("'category' was chosen" in w and "'topic' 40" in w and "label_column" in w for w in report["warnings"])


def test_unmappable_label_lists_the_names_recognised(uploader):
    error = error_of(uploader("x.csv", b"text,mood_score\nhello,1\nbye,2\n"), 400)
    assert error["fields"] == {"label_column": [error["message"]]}
    assert "sentiment" in error["message"] and "text, mood_score" in error["message"]


# --- 4. formula-looking cells are ordinary text on the way in ------------------------

FORMULA_LOOKING = ["@united thanks for the upgrade", "+1 for the crew", "- delayed again", "=) great flight",
                   "+cmd|' /C calc'!A0", "-2+3+cmd|' /C calc'!A0", '=HYPERLINK("http://evil","click")', "\t=1+1 tab first"]


def test_formula_looking_cells_are_accepted_and_counted(uploader):
    rows = [[text, "pos" if i % 2 else "neg"] for i, text in enumerate(FORMULA_LOOKING)]
    rows += [[f"plain tweet {i}", "pos" if i % 2 else "neg"] for i in range(12)] + [["a formula label", "@mention"]]
    out = io.StringIO()
    csv.writer(out).writerows([["text", "label"]] + rows)
    response = uploader("formulas.csv", out.getvalue().encode())
    report = report_of(uploader, response)
    assert report["rows"]["accepted"] == len(rows) and report["rows"]["rejected"] == 0
    assert report["formula_like_cells"] == len(FORMULA_LOOKING) + 1
    assert any(w.startswith(f"{len(FORMULA_LOOKING) + 1} cell(s) begin with =, +, -, @") and "line 2, column 'text'" in w
               for w in report["warnings"])
    # Stored and returned as JSON exactly as sent (stripped): neutralising is for CSV output only.
    texts = {row["text"] for row in all_rows(uploader, response)}
    assert {t.strip() for t in FORMULA_LOOKING} <= texts


# --- 5. encodings ---------------------------------------------------------------------

ACCENTED = ["café", "naïve", "señor", "crème brûlée", "déjà vu", "Zoë's façade", "über", "São Paulo"]


def banking77_with_accents(extra=()) -> str:
    lines = SLICE.read_text(encoding="utf-8").splitlines()
    header, rows = lines[0], lines[1:81]
    accented = [f"I paid for a {word} with my card {i},card_payment_not_recognised" for i, word in enumerate(list(ACCENTED) + list(extra))]
    return "\n".join([header] + rows[:40] + accented + rows[40:]) + "\n"


ENCODINGS = [  # (encoding, BOM, encoding reported, warning names)
    ("utf-8", b"", "utf-8", None),
    ("utf-8", codecs.BOM_UTF8, "utf-8-sig", None),
    ("cp1252", b"", "cp1252", "Windows-1252"),
    ("latin-1", b"", "cp1252", "Windows-1252"),  # Latin-1's printable range reads the same in cp1252
    ("utf-16", b"", "utf-16", "UTF-16"),
]


def test_accented_text_round_trips_in_the_encodings_western_files_use(uploader):
    for encoding, bom, reported, warned in ENCODINGS:
        extra = ["it’s “quoted” – fine"] if encoding != "latin-1" else []  # cp1252-only punctuation
        response = uploader(f"accents-{encoding}.csv", bom + banking77_with_accents(extra).encode(encoding))
        assert response.status_code == 201, (encoding, response.content)
        version = response.json()["latest_version"]
        assert version["encoding"] == reported, encoding
        warnings = [w for w in version["warnings"] if "UTF" in w or "converted" in w]
        if warned:
            assert any(warned in w and "converted" in w for w in warnings), (encoding, version["warnings"])
        else:
            assert warnings == [], encoding
        texts = {row["text"] for row in all_rows(uploader, response)}
        for i, word in enumerate(list(ACCENTED) + extra):
            assert f"I paid for a {word} with my card {i}" in texts, (encoding, word)


def test_a_clearly_cyrillic_file_is_read_as_cyrillic_with_the_encoding_named(uploader):
    phrases = ["Моя карта не работает", "Где мой перевод", "Как пополнить счёт", "Карта заблокирована"]
    content = "text,label\n" + "".join(f"{phrases[i % 4]} {i},{'card' if i % 2 else 'transfer'}\n" for i in range(40))
    response = uploader("ru.csv", content.encode("cp1251"))
    assert response.status_code == 201, response.content
    version = response.json()["latest_version"]
    assert version["encoding"] == "cp1251"
    assert any("cp1251" in w and "converted" in w for w in version["warnings"])
    assert {row["text"].rsplit(" ", 1)[0] for row in all_rows(uploader, response)} == set(phrases)


def test_undecodable_input_is_refused_with_a_clear_message(uploader, media_root):
    noise = bytes(b for b in random.Random(3).randbytes(20_000) if b)  # no NUL, not text in any encoding
    error = error_of(uploader("noise.csv", b"text,label\n" + noise), 415)
    assert error["code"] == "unknown_encoding" and "Save it as UTF-8" in error["message"]
    broken_utf16 = codecs.BOM_UTF16_LE + "text,label\nhello,a\n".encode("utf-16-le") + b"\x00\xd8" + "x,b\n".encode("utf-16-le")
    error = error_of(uploader("broken16.csv", broken_utf16), 400)
    assert error["code"] == "invalid_encoding" and "utf-16" in error["message"]
    assert DatasetVersion.objects.count() == 0 and stored_files(media_root) == []
