"""Uploads through the API: real files validate with a full report; every way a
file can be wrong is a clear 4xx that names the line, field or limit."""
import codecs
import gzip
import json

import pytest

from corpora.models import Dataset, DatasetVersion

from .conftest import SLICE, stored_files

pytestmark = pytest.mark.django_db


def nothing_left(media_root):
    return Dataset.objects.count() == 0 and DatasetVersion.objects.count() == 0 and stored_files(media_root) == []


def error_of(response, status):
    assert response.status_code == status, response.content
    return response.json()["error"]


def test_banking77_slice_validates_with_labels_detected(uploader, tiny_model, media_root):
    response = uploader("banking77_slice.csv", SLICE.read_bytes(), base_model="tiny-bert")
    assert response.status_code == 201, response.content
    body = response.json()
    version = body["latest_version"]
    assert version["task"] == "text_classification"
    assert version["column_mapping"] == {"text": "text", "label": "category"}
    assert version["row_count"] == 240 and version["rejected_count"] == 0 and version["label_count"] == 20
    assert version["train_count"] + version["validation_count"] == 240 and version["validation_count"] == 20
    report = uploader.client.get(f"/api/v1/datasets/{body['id']}/versions/1/report").json()["report"]
    assert set(report["labels"]["counts"].values()) == {12}
    assert report["labels"]["imbalance_ratio"] == 1.0
    lengths = report["lengths"]
    assert lengths["unit"] == "tokens" and lengths["tokenizer"] == "tiny-bert"
    assert 3 <= lengths["p50"] <= lengths["p95"] <= lengths["max"]
    assert sum(lengths["histogram"]["counts"]) == 240
    assert report["split"]["source"] == "carved" and report["leakage"]["texts_in_both_splits"] == 0
    # Stratified: every label keeps rows in train and most get one in validation.
    preview = uploader.client.get(f"/api/v1/datasets/{body['id']}/versions/1/preview?split=validation&limit=100").json()
    assert len({row["label"] for row in preview["rows"]}) >= 15
    # Stored under server-generated names: the source, train and validation files.
    files = stored_files(media_root)
    assert len(files) == 3 and all("banking77" not in p.name for p in files)
    assert DatasetVersion.objects.get().sha256 == __import__("hashlib").sha256(SLICE.read_bytes()).hexdigest()


def test_split_is_seeded_and_reproducible(uploader):
    def validation_rows(seed):
        body = uploader("s.csv", SLICE.read_bytes(), seed=seed).json()
        return [r["text"] for r in uploader.client.get(
            f"/api/v1/datasets/{body['id']}/versions/1/preview?split=validation&limit=100").json()["rows"]]

    assert validation_rows(7) == validation_rows(7)
    assert validation_rows(7) != validation_rows(8)


def test_gzip_tsv_and_jsonl(uploader):
    rows = [("I lost my card", "lost"), ("card not here yet", "arrival"), ("where is my card", "arrival"), ("stolen card", "lost")] * 3
    tsv = "utterance\tintent\n" + "".join(f"{t}\t{l}\n" for t, l in rows)
    response = uploader("q.tsv.gz", gzip.compress(tsv.encode()))
    assert response.status_code == 201, response.content
    version = response.json()["latest_version"]
    assert version["format"] == "tsv" and version["compressed"] is True
    assert version["column_mapping"] == {"text": "utterance", "label": "intent"}
    jsonl = "".join(json.dumps({"text": t, "label": l}) + "\n" for t, l in rows)
    assert uploader("q.jsonl", jsonl.encode()).status_code == 201


def test_bom_crlf_and_quoted_newlines(uploader):
    content = codecs.BOM_UTF8 + b'text,label\r\n"multi\r\nline text",a\r\n"has, comma",b\r\nplain,a\r\nmore,b\r\n'
    response = uploader("bom.csv", content, validation_fraction=0.25)
    assert response.status_code == 201, response.content
    body = response.json()
    rows = uploader.client.get(f"/api/v1/datasets/{body['id']}/versions/1/preview?limit=10").json()["rows"]
    rows += uploader.client.get(f"/api/v1/datasets/{body['id']}/versions/1/preview?split=validation&limit=10").json()["rows"]
    assert {r["text"] for r in rows} == {"multi\r\nline text", "has, comma", "plain", "more"}
    assert body["latest_version"]["encoding"] == "utf-8-sig"


def test_other_encoding_is_converted_with_a_warning(uploader):
    content = "text,label\ncafé au lait,drink\nthé vert,drink\ncrème brûlée,food\nsoupe à l'oignon,food\n".encode("cp1252")
    response = uploader("latin.csv", content, validation_fraction=0.25)
    assert response.status_code == 201, response.content
    version = response.json()["latest_version"]
    assert version["encoding"] != "utf-8"
    assert any("converted" in w for w in version["warnings"])
    body = response.json()
    texts = [r["text"] for r in uploader.client.get(f"/api/v1/datasets/{body['id']}/versions/1/preview?limit=10").json()["rows"]]
    assert any("é" in t or "è" in t for t in texts)


def test_pair_and_token_classification_are_detected(uploader):
    pairs = "premise,hypothesis,label\n" + "".join(f"a man {i},a person {i},{'yes' if i % 2 else 'no'}\n" for i in range(10))
    version = uploader("nli.csv", pairs.encode()).json()["latest_version"]
    assert version["task"] == "text_pair_classification"
    assert version["column_mapping"] == {"text_a": "premise", "text_b": "hypothesis", "label": "label"}
    tokens = "".join(json.dumps({"tokens": ["Ada", "lives", "in", f"London{i}"], "ner_tags": ["B-PER", "O", "O", "B-LOC"]}) + "\n" for i in range(10))
    version = uploader("ner.jsonl", tokens.encode()).json()["latest_version"]
    assert version["task"] == "token_classification" and version["label_count"] == 3


def test_explicit_mapping_and_unknown_column(uploader, media_root):
    content = b"body,kind\nhello there,a\ngood bye,b\nhi,a\nbye,b\n"
    error = error_of(uploader("m.csv", content, label_column="nope"), 400)
    assert error["fields"] == {"label_column": [error["message"]]} and "body, kind" in error["message"]
    assert nothing_left(media_root)
    ok = uploader("m.csv", content, text_column="body", label_column="kind", validation_fraction=0.25)
    assert ok.status_code == 201 and ok.json()["latest_version"]["column_mapping"] == {"text": "body", "label": "kind"}


def test_unmappable_columns_name_the_missing_field(uploader, media_root):
    error = error_of(uploader("x.csv", b"foo,bar\n1,2\n"), 400)
    assert "'label'" in error["message"] or "'text'" in error["message"]
    assert "foo, bar" in error["message"]
    assert nothing_left(media_root)


def test_duplicates_conflicts_and_given_split_leakage(uploader):
    content = ("text,label,split\n" + "same text,a,train\nsame text,a,validation\nsame text,b,train\n"
               + "".join(f"row {i},{'a' if i % 2 else 'b'},train\n" for i in range(10))).encode()
    body = uploader("dup.csv", content).json()
    report = uploader.client.get(f"/api/v1/datasets/{body['id']}/versions/1/report").json()["report"]
    assert report["split"] == {"source": "given"}
    assert report["duplicates"]["exact_rows"] == 1 and report["duplicates"]["conflicting_labels"] == 1
    assert report["leakage"]["texts_in_both_splits"] == 1
    assert report["rows"]["validation"] == 1
    assert any("both train and validation" in w for w in report["warnings"])


def test_rejected_rows_are_reported_with_line_numbers(uploader):
    good = "".join(f"text number {i},{'x' if i % 2 else 'y'}\n" for i in range(40))
    content = ("text,label\n" + good + "too,many,fields\n" + ",no text\n").encode()
    body = uploader("r.csv", content).json()
    report = uploader.client.get(f"/api/v1/datasets/{body['id']}/versions/1/report").json()["report"]
    assert report["rejected"]["examples"] == [
        {"line": 42, "reason": "expected 2 fields, found 3"},
        {"line": 43, "reason": "missing text"},
    ]
    assert report["missing"] == {"text": 1} and report["rows"]["accepted"] == 40


def test_imbalance_and_rare_label_warnings(uploader):
    content = "text,label\n" + "".join(f"common {i},big\n" for i in range(60)) + "rare one,small\nrare two,small\n"
    version = uploader("imb.csv", content.encode()).json()["latest_version"]
    assert any("imbalanced" in w for w in version["warnings"])
    assert any("fewer than 5 examples: small" in w for w in version["warnings"])


def test_new_version_of_a_dataset(uploader):
    body = uploader("v.csv", SLICE.read_bytes()).json()
    second = uploader("v2.csv", SLICE.read_bytes()[:-200] + b"\n", url=f"/api/v1/datasets/{body['id']}/versions")
    assert second.status_code == 201 and second.json()["number"] == 2
    versions = uploader.client.get(f"/api/v1/datasets/{body['id']}/versions").json()
    assert [v["number"] for v in versions] == [2, 1]
    assert uploader.client.get(f"/api/v1/datasets/{body['id']}").json()["latest_version"]["number"] == 2


def test_delete_version_and_dataset_remove_files(uploader, media_root, tenant_a, api_for, django_capture_on_commit_callbacks):
    body = uploader("d.csv", SLICE.read_bytes()).json()
    uploader("d2.csv", SLICE.read_bytes(), url=f"/api/v1/datasets/{body['id']}/versions")
    assert len(stored_files(media_root)) == 6
    # A write key acts as a member: deleting someone's dataset needs admin.
    refused = uploader.client.delete(f"/api/v1/datasets/{body['id']}/versions/1")
    assert refused.status_code == 403 and "Only an admin" in refused.json()["error"]["message"]
    admin = api_for(tenant_a.key(scopes=["admin"]))
    with django_capture_on_commit_callbacks(execute=True):
        assert admin.delete(f"/api/v1/datasets/{body['id']}/versions/1").status_code == 204
    assert DatasetVersion.objects.count() == 1 and len(stored_files(media_root)) == 3
    with django_capture_on_commit_callbacks(execute=True):
        assert admin.delete(f"/api/v1/datasets/{body['id']}").status_code == 204
    assert nothing_left(media_root)
    assert admin.get(f"/api/v1/datasets/{body['id']}").status_code == 404


# --- hostile files -------------------------------------------------------------------

def random_binary(n=4096) -> bytes:
    import random

    data = bytearray(random.Random(7).randbytes(n))
    data[10] = 0
    return bytes(data)


HOSTILE = {
    "binary garbage": ("garbage.csv", random_binary(), 415, "binary_content"),
    "empty file": ("empty.csv", b"", 400, "empty_file"),
    "whitespace only": ("blank.csv", b"\n\n  \n", 400, "empty_file"),
    "header only": ("header.csv", b"text,label\n", 400, "no_rows"),
    "truncated gzip": ("t.csv.gz", gzip.compress(SLICE.read_bytes())[:2000], 400, "gzip_truncated"),
    "fake gzip": ("f.csv.gz", b"text,label\nhello,a\n", 400, "gzip_corrupt"),
    "million columns": ("wide.csv", b"text,label\n" + b",".join([b"x"] * 1_000_000) + b"\n", 400, "too_many_columns"),
    "million-column header": ("wide2.csv", b",".join(b"c%d" % i for i in range(1_000_000)) + b"\n", 400, "too_many_columns"),
    "invalid JSON lines": ("bad.jsonl", b'{"text": "a", "label": "x"\n{nope}\n[1, 2]\n', 400, "no_valid_rows"),
    "unsupported type": ("model.xlsx", b"PK\x03\x04...", 415, "unsupported_type"),
    "mostly invalid rows": ("m.csv", b"text,label\n" + b"a,b,c\n" * 5 + b"ok,x\n", 400, "too_many_invalid_rows"),
    "invalid utf-8 deep in the file": ("late.csv", b"text,label\n" + b"plain text,a\n" * 8000 + b"caf\xe9 \xff\xfe,b\n", 400, "invalid_encoding"),
}


@pytest.mark.parametrize("case", sorted(HOSTILE))
def test_hostile_file_is_refused_and_leaves_nothing(uploader, media_root, case):
    name, content, status, code = HOSTILE[case]
    error = error_of(uploader(name, content), status)
    assert error["code"] == code, error
    assert error["message"] and "file" in error["fields"]
    assert nothing_left(media_root)


def test_hostile_errors_name_the_line(uploader):
    assert "Line 2 has 1000000 columns; at most 1000" in error_of(uploader(*HOSTILE["million columns"][:2]), 400)["message"]
    message = error_of(uploader(*HOSTILE["invalid JSON lines"][:2]), 400)["message"]
    assert "line 1: invalid JSON" in message


def test_gzip_bomb_is_stopped_at_the_limit(uploader, media_root, settings):
    settings.LATHE_DATASET_MAX_FILE_BYTES = 100_000  # decompression is capped at 10× this
    bomb = gzip.compress(b"text,label\n" + b"hello world,a\n" * 400_000, compresslevel=9)
    assert len(bomb) < 100_000
    error = error_of(uploader("bomb.csv.gz", bomb), 413)
    assert error["code"] == "decompressed_too_large" and "1.0 MB" in error["message"]
    assert nothing_left(media_root)


def test_path_traversal_file_name_is_refused(uploader, media_root):
    boundary = "lathe-boundary"
    body = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"../../etc/passwd.csv\"\r\n"
            f"Content-Type: text/csv\r\n\r\ntext,label\r\nhello,a\r\n--{boundary}--\r\n").encode()
    response = uploader.client.generic("POST", "/api/v1/datasets", body, content_type=f"multipart/form-data; boundary={boundary}")
    error = error_of(response, 400)
    assert "Invalid file name '../../etc/passwd.csv'" in error["message"]
    assert nothing_left(media_root)


def test_file_too_large_names_limit_and_size(uploader, media_root, settings):
    settings.LATHE_DATASET_MAX_FILE_BYTES = 5_000
    error = error_of(uploader("big.csv", SLICE.read_bytes()), 413)
    assert error["code"] == "file_too_large"
    assert "19.2 KB" in error["message"] and "5.0 KB" in error["message"]
    assert nothing_left(media_root)


def test_storage_quota_names_quota_and_usage(uploader, media_root, settings):
    assert uploader("one.csv", SLICE.read_bytes()).status_code == 201
    used = DatasetVersion.objects.get().stored_bytes
    settings.LATHE_STORAGE_QUOTA_BYTES = used + 1000
    before = stored_files(media_root)
    error = error_of(uploader("two.csv", SLICE.read_bytes()), 403)
    assert error["code"] == "storage_quota_exceeded"
    assert "Storage quota reached" in error["message"] and "used" in error["message"]
    assert DatasetVersion.objects.count() == 1 and stored_files(media_root) == before


def test_bad_options_name_their_field(uploader, media_root):
    assert "validation_fraction" in error_of(uploader("o.csv", SLICE.read_bytes(), validation_fraction=0.9), 400)["fields"]
    assert "base_model" in error_of(uploader("o.csv", SLICE.read_bytes(), base_model="gpt-17"), 400)["fields"]
    assert "task" in error_of(uploader("o.csv", SLICE.read_bytes(), task="regression"), 400)["fields"]
    assert nothing_left(media_root)


def test_read_key_cannot_upload(tenant_a, api_for, media_root):
    from django.core.files.uploadedfile import SimpleUploadedFile

    reader = api_for(tenant_a.key(scopes=["read"]))
    response = reader.post("/api/v1/datasets", {"file": SimpleUploadedFile("a.csv", SLICE.read_bytes())}, format="multipart")
    assert response.status_code == 403 and nothing_left(media_root)
