"""Encodings the user can see and name, and line numbers an editor agrees with.

- A dry run (dry_run=true) answers with the detected encoding, how confident the
  detection is, and the first rows as they would be stored; nothing is kept.
- `encoding` names the file's encoding (a Python codec); an unknown name is a
  400 on that field, and one that does not decode the file names the line and byte.
- Lines end at \\r\\n, \\n and a lone \\r (what editors count): every line Lathe
  reports, rows and decode errors alike, is the line an editor shows.
"""
import codecs
import json
import re

import pytest

from corpora.models import Dataset, DatasetVersion

from .conftest import stored_files

pytestmark = pytest.mark.django_db

WORDS = ["café", "naïve", "señor", "crème brûlée"]
# (codec to write the file with, BOM, encoding detected, confidence, what to name it)
ENCODINGS = [
    ("utf-8", b"", "utf-8", "high", "utf-8"),
    ("utf-8", codecs.BOM_UTF8, "utf-8-sig", "certain", "utf-8"),
    ("cp1252", b"", "cp1252", "medium", "cp1252"),
    ("latin-1", b"", "cp1252", "medium", "latin-1"),
    ("utf-16", b"", "utf-16", "certain", "utf-16"),
]


def accented_csv() -> str:
    rows = [f"I ordered a {WORDS[i % 4]} number {i},{'food' if i % 2 else 'drink'}" for i in range(24)]
    return "text,label\n" + "\n".join(rows) + "\n"


def editor_line(text: str, position: int) -> int:
    """The line an editor shows for `position`: line ends are \\r\\n, \\n and a lone \\r."""
    return len(re.findall(r"\r\n|\r|\n", text[:position])) + 1


def error_of(response, status):
    assert response.status_code == status, response.content
    return response.json()["error"]


def all_texts(uploader, body) -> set[str]:
    texts = set()
    for split in ("train", "validation"):
        rows = uploader.client.get(f"/api/v1/datasets/{body['id']}/versions/1/preview?split={split}&limit=100").json()["rows"]
        texts |= {row["text"] for row in rows}
    return texts


@pytest.mark.parametrize("codec,bom,detected,confidence,named", ENCODINGS, ids=[f"{e[0]}{'-bom' if e[1] else ''}" for e in ENCODINGS])
def test_accents_round_trip_checked_first_then_named(uploader, media_root, codec, bom, detected, confidence, named):
    content = bom + accented_csv().encode(codec)
    # 1. The check: the encoding, its confidence and the rows as they will be stored; nothing kept.
    check = uploader(f"accents-{codec}.csv", content, dry_run="true")
    assert check.status_code == 200, check.content
    body = check.json()
    assert body["kept"] is False and body["encoding"] == detected and body["encoding_confidence"] == confidence
    assert body["encoding_detection"]["source"] == ("bom" if confidence == "certain" else "detected")
    assert body["encoding_detection"]["needs_confirmation"] is (confidence == "medium")
    assert [row["text"] for row in body["preview"][:4]] == [f"I ordered a {WORDS[i]} number {i}" for i in range(4)]
    assert body["rows"]["accepted"] == 24 and body["report"]["rows"]["accepted"] == 24
    if confidence == "medium":  # the warning says how sure the guess is
        assert any("medium confidence" in w and "converted" in w for w in body["warnings"]), body["warnings"]
    assert Dataset.objects.count() == 0 and stored_files(media_root) == []
    # 2. The upload, naming the encoding: read exactly as given, and said so.
    response = uploader(f"accents-{codec}.csv", content, encoding=named)
    assert response.status_code == 201, response.content
    version = response.json()["latest_version"]
    assert version["encoding"] == ("utf-8-sig" if bom else codecs.lookup(named).name)
    assert version["encoding_confidence"] == "certain"
    assert not [w for w in version["warnings"] if "converted" in w]
    texts = all_texts(uploader, response.json())
    assert {f"I ordered a {WORDS[i % 4]} number {i}" for i in range(24)} == texts
    report = uploader.client.get(f"/api/v1/datasets/{response.json()['id']}/versions/1/report").json()["report"]
    assert report["encoding_detection"]["source"] == "given"


def test_a_detected_upload_says_how_confident_it_is(uploader):
    response = uploader("w.csv", accented_csv().encode("cp1252"))
    assert response.status_code == 201, response.content
    version = response.json()["latest_version"]
    assert version["encoding"] == "cp1252" and version["encoding_confidence"] == "medium"
    assert any("Windows-1252" in w and "medium confidence" in w and "encoding field" in w for w in version["warnings"])


def test_a_dry_run_of_a_new_version_keeps_nothing(uploader):
    first = uploader("a.csv", accented_csv().encode()).json()
    url = f"/api/v1/datasets/{first['id']}/versions"
    check = uploader("b.csv", accented_csv().encode("utf-16"), url=url, dry_run="true")
    assert check.status_code == 200 and check.json()["encoding"] == "utf-16", check.content
    assert DatasetVersion.objects.count() == 1


def test_an_unknown_or_non_text_encoding_is_a_400_naming_the_field(uploader, media_root):
    for name, says in [("utf-9", "Unknown encoding 'utf-9'"), ("base64", "not a text encoding")]:
        error = error_of(uploader("a.csv", accented_csv().encode(), encoding=name), 400)
        assert error["code"] == "unknown_encoding_name" and list(error["fields"]) == ["encoding"], error
        assert says in error["message"] and "the encoding field" in error["message"]
    assert Dataset.objects.count() == 0 and stored_files(media_root) == []


def test_a_named_encoding_that_does_not_decode_names_line_and_byte(uploader, media_root):
    # Lone CRs inside quoted fields and as row ends, then a cp1252 byte in a file named UTF-8.
    text = 'text,label\r\n"one\rtwo",a\n"three\r\nfour",b\rplain,a\r\n' + "".join(f"row {i},b\n" for i in range(10))
    content = text.encode() + "crème,a\n".encode("cp1252") + b"last,b\n"
    error = error_of(uploader("named.csv", content, encoding="utf-8"), 400)
    offset = content.index(b"\xe8")
    line = editor_line(text + "cr", len(text) + 2)
    assert line == 17
    assert error["code"] == "invalid_encoding" and list(error["fields"]) == ["encoding"]
    assert error["message"].startswith(f"Line {line} (byte offset {offset:,}): 0xE8 is not valid utf-8")
    # Named correctly, the same file is kept.
    assert uploader("named.csv", content, encoding="cp1252").status_code == 201


def test_reported_lines_match_an_editor_with_mixed_line_ends(uploader, media_root):
    """A CSV whose lines end in \r\n, \n and lone \r, with lone CRs inside
    quoted fields, past the 64 KB sniffed: each refused row names the editor's
    line of its first character, and a byte that does not decode names its line
    and byte offset exactly (not where the reader had got to); JSONL too."""
    ends = ["\r\n", "\n", "\r"]
    parts, markers = ["text,label\n"], []
    for i in range(3000):
        if i % 300 == 4:
            row = f"bad{i},x,extra"
            markers.append(row)
        elif i % 3 == 0:
            row = f'"quoted {i}\rwith a lone CR",{"ab"[i % 2]}'
        else:
            row = f"a plain row that is number {i},{'ab'[i % 2]}"
        parts.append(row + ends[i % 3])
    text = "".join(parts)
    assert len(text) > 64 * 1024
    response = uploader("mixed.csv", text.encode(), validation_fraction="0.2")
    assert response.status_code == 201, response.content
    body = uploader.client.get(f"/api/v1/datasets/{response.json()['id']}/versions/1/report").json()["report"]
    assert [e["line"] for e in body["rejected"]["examples"]] == [editor_line(text, text.index(m)) for m in markers]

    late = text.encode() + "naïve,b\n".encode("latin-1")  # not UTF-8, after the sniffed head
    error = error_of(uploader("late.csv", late), 400)
    where = late.index("ï".encode("latin-1"))
    assert error["code"] == "invalid_encoding" and error["fields"] == {"file": [error["message"]]}
    assert error["message"].startswith(
        f"Line {editor_line(text, len(text))} (byte offset {where:,}): 0xEF is not valid utf-8 (invalid continuation byte)")
    assert DatasetVersion.objects.count() == 1

    lines, bad = [], []
    for i in range(60):
        if i % 10 == 7:
            lines.append("{not json")
            bad.append(i)
        else:
            lines.append(json.dumps({"text": f"row {i}", "label": "ab"[i % 2]}))
    jsonl = "".join(line + ends[i % 3] for i, line in enumerate(lines))
    report = uploader("mixed.jsonl", jsonl.encode())
    assert report.status_code == 201, report.content
    body = uploader.client.get(f"/api/v1/datasets/{report.json()['id']}/versions/1/report").json()["report"]
    assert [e["line"] for e in body["rejected"]["examples"]] == [
        editor_line(jsonl, jsonl.index("{not json", sum(len(lines[j]) + len(ends[j % 3]) for j in range(i)))) for i in bad]
