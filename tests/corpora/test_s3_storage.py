"""With a bucket configured, dataset files go to S3-compatible object storage.
Object storage is outside our walls, so a local stand-in plays it: moto's S3
server on loopback, driven by the real boto3 / django-storages code."""
import socket

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile

from corpora.models import DatasetVersion

from .conftest import SLICE

pytestmark = pytest.mark.django_db
BUCKET = "lathe-test-datasets"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def s3(settings):
    boto3 = pytest.importorskip("boto3")
    from moto.server import ThreadedMotoServer

    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port)
    server.start()
    endpoint = f"http://127.0.0.1:{port}"
    credentials = {"aws_access_key_id": "test", "aws_secret_access_key": "test", "region_name": "us-east-1"}
    client = boto3.client("s3", endpoint_url=endpoint, **credentials)
    client.create_bucket(Bucket=BUCKET)
    settings.STORAGES = {
        **settings.STORAGES,
        "default": {"BACKEND": "storages.backends.s3.S3Storage", "OPTIONS": {
            "bucket_name": BUCKET, "endpoint_url": endpoint, "access_key": "test", "secret_key": "test",
            "region_name": "us-east-1", "file_overwrite": False, "default_acl": "private"}},
    }
    try:
        yield client
    finally:
        server.stop()


def keys(client) -> list[str]:
    return sorted(o["Key"] for o in client.list_objects_v2(Bucket=BUCKET).get("Contents", []))


def test_upload_preview_and_delete_on_object_storage(s3, tenant_a, api_for, media_root, django_capture_on_commit_callbacks):
    admin = api_for(tenant_a.key(scopes=["admin"]))
    response = admin.post("/api/v1/datasets", {"file": SimpleUploadedFile("slice.csv", SLICE.read_bytes())}, format="multipart")
    assert response.status_code == 201, response.content
    version = DatasetVersion.objects.get()
    stored = keys(s3)
    assert stored == sorted(version.stored_names) and len(stored) == 3
    assert all(k.startswith(f"datasets/{tenant_a.organization.pk}/") for k in stored)
    assert not media_root.exists() or not any(media_root.rglob("*.jsonl"))  # nothing on local disk
    source = s3.get_object(Bucket=BUCKET, Key=version.source_file)["Body"].read()
    assert source == SLICE.read_bytes()
    preview = admin.get(f"/api/v1/datasets/{version.dataset_id}/versions/1/preview?limit=3").json()["rows"]
    assert len(preview) == 3 and set(preview[0]) == {"text", "label"}
    with django_capture_on_commit_callbacks(execute=True):
        assert admin.delete(f"/api/v1/datasets/{version.dataset_id}").status_code == 204
    assert keys(s3) == []


def test_failed_upload_leaves_no_object(s3, tenant_a, api_for):
    writer = api_for(tenant_a.key(scopes=["write"]))
    response = writer.post("/api/v1/datasets", {"file": SimpleUploadedFile("f.csv", b"text,label\n,a\n")},
                           format="multipart")
    assert response.status_code == 400
    assert keys(s3) == []
