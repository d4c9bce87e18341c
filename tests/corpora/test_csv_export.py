"""CSV downloads (preview, label counts, rejected rows; API and dashboard) go
through core.csv_export: a cell that begins with =, +, -, @, tab or CR gets
OWASP's leading apostrophe, so a spreadsheet shows it instead of running it."""
import csv
import io

import pytest

from core.csv_export import neutralize, write_csv
from corpora.models import DatasetVersion

pytestmark = pytest.mark.django_db

DDE = ["+cmd|' /C calc'!A0", "-2+3+cmd|' /C calc'!A0", "@SUM(1+1)*cmd|' /C calc'!A0", '=HYPERLINK("http://evil","x")']


def parse(response) -> list[list[str]]:
    assert response.status_code == 200, response.content
    assert response["Content-Type"] == "text/csv; charset=utf-8" and "attachment" in response["Content-Disposition"]
    text = b"".join(response.streaming_content).decode("utf-8")
    assert text.startswith("\ufeff")  # so Excel reads UTF-8
    return list(csv.reader(io.StringIO(text[1:])))


@pytest.mark.parametrize("cell, written", [
    ("@united thanks", "'@united thanks"), ("+1 for the crew", "'+1 for the crew"), ("- delayed", "'- delayed"),
    ("=1+1", "'=1+1"), ("\t=1+1", "'\t=1+1"), ("\r=1+1", "'\r=1+1"),
    (DDE[0], "'" + DDE[0]), (DDE[1], "'" + DDE[1]),
    ("plain text", "plain text"), ("a=b", "a=b"), ("", ""), (None, ""), (3, 3), (-0.5, -0.5), (["=x", "y"], '["=x", "y"]'),
])
def test_neutralize_follows_owasp(cell, written):
    assert neutralize(cell) == written


def test_write_csv_quotes_every_cell_and_neutralises_the_header_too():
    out = io.StringIO()
    write_csv(out, ["=text", "label"], [[DDE[0], 'say "hi"'], [1, None]])
    assert out.getvalue() == '"\'=text","label"\r\n"\'+cmd|\' /C calc\'!A0","say ""hi"""\r\n"1",""\r\n'


@pytest.fixture
def formula_dataset(uploader):
    rows = [[text, "pos" if i % 2 else "neg"] for i, text in enumerate(DDE)]
    rows += [["@united where is my bag", "=cmd|' /C calc'!A0"]]
    rows += [[f"plain tweet {i}", "pos" if i % 2 else "neg"] for i in range(40)]
    rows += [["too", "many", "fields"]]
    out = io.StringIO()
    csv.writer(out).writerows([["text", "label"]] + rows)
    response = uploader("dde.csv", out.getvalue().encode(), validation_fraction=0.1, seed=1)
    assert response.status_code == 201, response.content
    return response.json()["id"]


def test_api_preview_csv_neutralises_formula_cells(uploader, formula_dataset):
    base = f"/api/v1/datasets/{formula_dataset}/versions/1"
    json_rows = uploader.client.get(f"{base}/preview?split=train&limit=100").json()["rows"]
    rows = parse(uploader.client.get(f"{base}/preview.csv?split=train&limit=100"))
    assert rows[0] == ["text", "label"]
    assert rows[1:] == [[neutralize(r["text"]), neutralize(r["label"])] for r in json_rows]
    texts = {text for text, _ in rows[1:]}
    exported = texts | {text for text, _ in parse(uploader.client.get(f"{base}/preview.csv?split=validation"))[1:]}
    assert {"'" + payload for payload in DDE} | {"'@united where is my bag"} <= exported
    assert not any(cell.startswith(("=", "+", "-", "@", "\t", "\r")) for row in rows for cell in row)


def test_api_labels_and_rejected_csv(uploader, formula_dataset):
    base = f"/api/v1/datasets/{formula_dataset}/versions/1"
    labels = parse(uploader.client.get(f"{base}/labels.csv"))
    assert labels[0] == ["label", "rows"] and ["'=cmd|' /C calc'!A0", "1"] in labels
    rejected = parse(uploader.client.get(f"{base}/rejected.csv"))
    assert rejected == [["line", "reason"], ["47", "expected 2 fields, found 3"]]
    unknown = uploader.client.get(f"{base}/secrets.csv")
    assert unknown.status_code == 400 and "kind" in unknown.json()["error"]["fields"]


def test_dashboard_downloads_neutralise_too(client, tenant_a, formula_dataset):
    client.force_login(tenant_a.owner)
    detail = client.get(f"/o/acme/datasets/{formula_dataset}").content.decode()
    for kind in ("preview", "labels", "rejected"):
        assert f'href="/o/acme/datasets/{formula_dataset}/versions/1/{kind}.csv"' in detail
    labels = parse(client.get(f"/o/acme/datasets/{formula_dataset}/versions/1/labels.csv"))
    assert ["'=cmd|' /C calc'!A0", "1"] in labels
    version = DatasetVersion.objects.get()
    preview = parse(client.get(f"/o/acme/datasets/{formula_dataset}/versions/1/preview.csv"))
    assert len(preview) == 1 + min(100, version.train_count)
    assert not any(cell.startswith(("=", "+", "-", "@")) for row in preview for cell in row)
    assert client.get(f"/o/acme/datasets/{formula_dataset}/versions/1/preview.csv?split=nope").status_code == 400
