import re

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile

from corpora.models import DatasetVersion
from tests.dashboard.chart_data import chart_data

from .conftest import SLICE, stored_files

pytestmark = pytest.mark.django_db


def form(name="slice.csv", content=None, **extra):
    return {"file": SimpleUploadedFile(name, content if content is not None else SLICE.read_bytes()),
            "validation_fraction": "0.1", "seed": "13", **extra}


def test_upload_page_and_detail_with_charts(client, tenant_a, tiny_model):
    client.force_login(tenant_a.owner)
    page = client.get("/o/acme/datasets")
    assert page.status_code == 200 and "Upload and validate" in page.content.decode()
    response = client.post("/o/acme/datasets", form(base_model="tiny-bert"))
    version = DatasetVersion.objects.get()
    assert response.status_code == 302 and response["Location"] == f"/o/acme/datasets/{version.dataset_id}"
    detail = client.get(response["Location"]).content.decode()
    assert 'data-testid="label-chart"' in detail and len(chart_data(detail, "label-chart-data")) == 20
    lengths = chart_data(detail, "length-chart-data")
    assert 'data-testid="length-histogram"' in detail and "tiny-bert" in detail
    assert lengths["unit"] == "tokens" and sum(b["count"] for b in lengths["bins"]) == version.report["rows"]["accepted"]
    assert "240</strong>rows accepted" in detail.replace("\n", "")


def test_htmx_upload_redirects_and_errors_swap_inline(client, tenant_a, media_root):
    client.force_login(tenant_a.owner)
    ok = client.post("/o/acme/datasets", form(), HTTP_HX_REQUEST="true")
    assert ok.status_code == 204 and ok["HX-Redirect"].startswith("/o/acme/datasets/")
    bad = client.post("/o/acme/datasets", form("empty.csv", b""), HTTP_HX_REQUEST="true")
    assert bad.status_code == 400
    body = bad.content.decode()
    assert body.lstrip().startswith("<form") and "<html" not in body  # a partial for htmx to swap
    assert 'data-field="file"' in body and "The file is empty." in body
    assert DatasetVersion.objects.count() == 1


def test_preview_is_escaped(client, tenant_a):
    client.force_login(tenant_a.owner)
    content = b"text,label\n<script>alert(1)</script>,a\nplain,b\nmore,a\nagain,b\n"
    client.post("/o/acme/datasets", form("x.csv", content, validation_fraction="0.25"))
    detail = client.get(f"/o/acme/datasets/{DatasetVersion.objects.get().dataset_id}").content.decode()
    assert "<script>alert(1)</script>" not in detail and "&lt;script&gt;alert(1)&lt;/script&gt;" in detail


def test_new_version_and_deletes_from_the_dashboard(client, tenant_a, media_root, django_capture_on_commit_callbacks):
    client.force_login(tenant_a.owner)
    client.post("/o/acme/datasets", form())
    dataset_id = DatasetVersion.objects.get().dataset_id
    assert client.post(f"/o/acme/datasets/{dataset_id}", form("v2.csv")).status_code == 302
    assert list(DatasetVersion.objects.values_list("number", flat=True).order_by("number")) == [1, 2]
    with django_capture_on_commit_callbacks(execute=True):
        client.post(f"/o/acme/datasets/{dataset_id}/versions/2/delete")
        client.post(f"/o/acme/datasets/{dataset_id}/delete")
    assert not DatasetVersion.objects.exists() and stored_files(media_root) == []


def test_formula_looking_text_is_accepted_with_a_warning_on_the_page(client, tenant_a, media_root):
    client.force_login(tenant_a.owner)
    content = b"text,label\n=1+1,a\n@united my bag,b\nplain,a\nmore,b\n"
    response = client.post("/o/acme/datasets", form("f.csv", content, validation_fraction="0.25"))
    assert response.status_code == 302
    detail = client.get(response["Location"]).content.decode()
    assert "2 cell(s) begin with =, +, -, @" in detail and "prefix them with an apostrophe" in detail


# --- refused uploads keep the choices; guessed encodings are shown first; the next step --------

ACCENTED = "text,label\n" + "".join(f"une crème brûlée au café {i},{'sweet' if i % 2 else 'bitter'}\n" for i in range(20))


def errors_of(body: str) -> list[str]:
    return re.findall(r'<p class="error" data-field="[^"]+">(.*?)</p>', body, flags=re.S)


def test_a_refused_upload_keeps_the_choices_and_speaks_the_forms_labels(client, tenant_a):
    client.force_login(tenant_a.owner)
    chosen = {**form("my-slice.csv"), "name": "Cards", "task": "text_classification", "seed": "7",
              "label_column": "nope", "encoding": "cp1252", "validation_fraction": "0.2"}
    page = client.post("/o/acme/datasets", chosen)
    assert page.status_code == 400
    body = page.content.decode()
    assert "You chose <strong>my-slice.csv</strong>; your browser cannot keep it after sending, so choose it again" in body
    for name, value in [("name", "Cards"), ("seed", "7"), ("label_column", "nope"), ("encoding", "cp1252"),
                        ("validation_fraction", "0.2")]:
        assert re.search(rf'<input[^>]*name="{name}"[^>]*value="{re.escape(value)}"', body), name
    assert '<option value="text_classification" selected>' in body
    problems = errors_of(body)
    assert problems and all("_column" not in p and "validation_fraction" not in p for p in problems), problems
    assert any("(given for label)" in p for p in problems)
    # A message that names a form field says its label: “Label column”, not label_column.
    unmapped = client.post("/o/acme/datasets", form("moods.csv", b"text,mood_score\nhello,1\nbye,2\n"),
                           HTTP_HX_REQUEST="true")
    body = unmapped.content.decode()
    assert unmapped.status_code == 400 and "You chose <strong>moods.csv</strong> (still selected)" in body
    assert 'hx-preserve="true"' in body  # htmx keeps the file input (and its file) across the swap
    problems = errors_of(body)
    assert any("Name it with “Label column”." in p for p in problems) and not any("label_column" in p for p in problems)
    assert DatasetVersion.objects.count() == 0


def test_a_guessed_encoding_is_shown_before_the_version_is_kept(client, tenant_a, media_root):
    client.force_login(tenant_a.owner)
    held = client.post("/o/acme/datasets", form("desserts.csv", ACCENTED.encode("cp1252")), HTTP_HX_REQUEST="true")
    assert held.status_code == 200 and DatasetVersion.objects.count() == 0 and stored_files(media_root) == []
    body = held.content.decode()
    assert "Check the text before it is kept" in body and "<strong>medium</strong> confidence" in body
    assert "une crème brûlée au café 0" in body and "Keep this version" in body
    assert re.search(r'<input[^>]*name="encoding"[^>]*value="cp1252"', body)  # filled in: sending again confirms it
    kept = client.post("/o/acme/datasets", form("desserts.csv", ACCENTED.encode("cp1252"), encoding="cp1252"))
    version = DatasetVersion.objects.get()
    assert kept.status_code == 302 and version.encoding == "cp1252"
    detail = client.get(kept["Location"]).content.decode()
    assert "cp1252 (certain confidence, as named)" in detail and "crème brûlée" in detail
    # "Check first" keeps nothing, whatever the encoding; UTF-8 is not held.
    checked = client.post("/o/acme/datasets", form("utf8.csv", ACCENTED.encode(), action="check"))
    assert checked.status_code == 200 and "Checked — nothing was kept" in checked.content.decode()
    assert "<strong>high</strong> confidence" in checked.content.decode()
    assert DatasetVersion.objects.count() == 1
    assert client.post("/o/acme/datasets", form("utf8.csv", ACCENTED.encode())).status_code == 302


def test_the_dataset_page_offers_fine_tuning_it_with_the_dataset_preselected(client, tenant_a):
    client.force_login(tenant_a.owner)
    client.post("/o/acme/datasets", form("first.csv"))
    client.post("/o/acme/datasets", form("second.csv"))
    older = DatasetVersion.objects.get(original_filename="first.csv").dataset  # listed second in the launch form
    detail = client.get(f"/o/acme/datasets/{older.pk}").content.decode()
    link = re.search(r'<a class="button" href="([^"]+)" data-testid="fine-tune">Fine-tune this dataset</a>', detail)
    assert link and link.group(1) == f"/o/acme/jobs?dataset={older.pk}"
    jobs = client.get(link.group(1)).content.decode()
    options = re.findall(r'<option value="(\d+)"( selected)?>', jobs.split('name="dataset_id"')[1].split("</select>")[0])
    assert [pk for pk, selected in options if selected] == [str(older.pk)] and len(options) == 2
    # The upload form shows "Validating…" while htmx waits (lathe.css) and disables its buttons.
    page = client.get("/o/acme/datasets").content.decode()
    assert 'hx-disabled-elt="find fieldset.upload-actions"' in page and 'data-upload-status role="status"' in page
