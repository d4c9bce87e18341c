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
