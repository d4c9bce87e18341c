"""The model archive is unpacked defensively: damaged archives are a 400 naming
the problem, unpacking counts the bytes really written and stops at the storage
left under the organization's plan, and safetensors headers are checked against
the config before any weights are written. Zips are built small, in tmp dirs;
limits are made small through settings."""
from __future__ import annotations

import io
import json
import os
import struct
import zipfile

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile

from registry.models import UploadedModel
from registry.validation import ModelFileError, check_weight_headers, safe_extract
from tests.model_archives import edited_config, tiny_classifier_folder, zip_bytes

pytestmark = pytest.mark.django_db


@pytest.fixture(scope="module")
def model_folder(tmp_path_factory):
    return tiny_classifier_folder(tmp_path_factory.mktemp("archive-safety") / "model")


@pytest.fixture
def client(tenant_a, api_for, settings, tmp_path):
    settings.MEDIA_ROOT = str(tmp_path / "media")
    return api_for(tenant_a.key(scopes=["write"]))


def upload(client, archive: bytes):
    return client.post("/api/v1/models", {"file": SimpleUploadedFile("m.zip", archive)}, format="multipart")


def refused(response, status, *phrases):
    assert response.status_code == status, response.content
    error = response.json()["error"]
    for phrase in phrases:
        assert phrase in error["message"], error["message"]
    assert error["fields"]["file"] == [error["message"]]
    assert not UploadedModel.objects.exists()
    return error


def nothing_stored(settings) -> bool:
    root = os.path.join(settings.MEDIA_ROOT, "models")
    return not any(files for _r, _d, files in os.walk(root))


def deflated_zip(folder, extra: dict[str, bytes]) -> bytes:
    """The model folder (stored, as zip_bytes does) plus highly compressible extras (deflated)."""
    out = io.BytesIO(zip_bytes(folder))
    with zipfile.ZipFile(out, "a", compression=zipfile.ZIP_DEFLATED) as archive:
        for name, data in extra.items():
            archive.writestr(name, data)
    return out.getvalue()


def central_entry(data: bytes, name: str) -> int:
    """Offset of `name`'s central directory record."""
    encoded, position = name.encode(), data.find(b"PK\x01\x02")
    while position != -1:
        length = struct.unpack_from("<H", data, position + 28)[0]
        if data[position + 46:position + 46 + length] == encoded:
            return position
        position = data.find(b"PK\x01\x02", position + 4)
    raise AssertionError(name)


# --- 6. damaged archives are a 400, never a 500 -----------------------------------

def test_an_empty_zip_is_refused(client, settings):
    empty = io.BytesIO()
    zipfile.ZipFile(empty, "w").close()
    refused(upload(client, empty.getvalue()), 400, "The archive is empty")
    only_folders = io.BytesIO()
    with zipfile.ZipFile(only_folders, "w") as archive:
        archive.writestr("my-model/", b"")
        archive.writestr("__MACOSX/my-model/._config.json", b"\x00\x05\x16\x07")
    refused(upload(client, only_folders.getvalue()), 400, "The archive is empty")
    assert nothing_stored(settings)


def test_a_member_with_a_bad_crc_is_refused_naming_it(client, model_folder, settings):
    data = bytearray(zip_bytes(model_folder))
    info = zipfile.ZipFile(io.BytesIO(bytes(data))).getinfo("my-model/config.json")
    name_length, extra_length = struct.unpack_from("<HH", data, info.header_offset + 26)
    start = info.header_offset + 30 + name_length + extra_length
    data[start + 10] ^= 0x01  # one bit of config.json's bytes; its CRC no longer matches
    refused(upload(client, bytes(data)), 400, "my-model/config.json: damaged in the archive", "Bad CRC-32")
    assert nothing_stored(settings)


def test_a_central_directory_that_under_declares_sizes_is_refused(client, model_folder, settings):
    data = bytearray(zip_bytes(model_folder))
    entry = central_entry(bytes(data), "my-model/config.json")
    struct.pack_into("<II", data, entry + 20, 40, 40)  # compressed and uncompressed size: 40 bytes
    refused(upload(client, bytes(data)), 400, "my-model/config.json: damaged in the archive")
    assert nothing_stored(settings)


# --- 7. real bytes, the plan's storage, headers before weights ----------------------

def test_unpacking_stops_at_the_storage_left_under_the_plan(client, model_folder, settings, tenant_a):
    """2 MB of zeros zip to a few KB: the upload is small, what it unpacks is not."""
    archive = deflated_zip(model_folder, {"my-model/README.md": b" " * 3_000_000})
    assert len(archive) < 1_000_000
    settings.LATHE_STORAGE_QUOTA_BYTES = 2_000_000  # under the plan's: the smaller one applies
    error = refused(upload(client, archive), 403, "storage left under your plan", "0 B of 2.0 MB used",
                    "stopped while unpacking my-model/README.md")
    assert error["code"] == "storage_quota_exceeded"
    assert nothing_stored(settings)
    settings.LATHE_STORAGE_QUOTA_BYTES = 20_000_000  # the same archive fits a larger plan
    assert upload(client, archive).status_code == 201


def test_real_bytes_are_counted_and_nothing_past_the_limit_is_written(model_folder, tmp_path):
    archive = tmp_path / "bomb.zip"
    archive.write_bytes(deflated_zip(model_folder, {"my-model/notes.txt": b"\x00" * 5_000_000}))
    target = tmp_path / "out"
    with pytest.raises(ModelFileError) as refusal:
        safe_extract(str(archive), target, max_unpacked_bytes=1_000_000)
    assert refusal.value.status == 413 and "more than 1.0 MB" in refusal.value.message
    written = sum(p.stat().st_size for p in target.rglob("*") if p.is_file())
    assert 0 < written <= 1_000_000


def test_headers_are_checked_against_the_config_before_weights_are_written(model_folder, tmp_path):
    archive = tmp_path / "wrong-shape.zip"
    archive.write_bytes(zip_bytes(model_folder, replace={"config.json": edited_config(model_folder, intermediate_size=128)}))
    target = tmp_path / "out"
    with pytest.raises(ModelFileError) as refusal:
        safe_extract(str(archive), target, max_unpacked_bytes=10**9, check_headers=check_weight_headers)
    assert "does not match the config, which implies [128]" in refusal.value.message
    assert (target / "my-model" / "config.json").exists()
    assert not (target / "my-model" / "model.safetensors").exists()


def test_weights_whose_header_declares_more_than_the_storage_left_are_refused_unread(client, model_folder, settings):
    header = json.dumps({"classifier.weight": {"dtype": "F32", "shape": [500_000_000], "data_offsets": [0, 2_000_000_000]}})
    lying = struct.pack("<Q", len(header)) + header.encode() + b"\x00" * 64
    settings.LATHE_STORAGE_QUOTA_BYTES = 5_000_000
    error = refused(upload(client, zip_bytes(model_folder, replace={"model.safetensors": lying})), 403,
                    "the safetensors headers declare 2.0 GB of weights", "storage left under your plan")
    assert error["code"] == "storage_quota_exceeded"


@pytest.mark.parametrize("weights, expected", [
    (b"\x05\x00", "not a readable safetensors file (2 bytes, shorter than a header)"),
    (struct.pack("<Q", 10**12) + b"{}", "its header claims 1,000,000,000,000 bytes"),
    (struct.pack("<Q", 7) + b"{nope!}", "its header is not JSON"),
    (struct.pack("<Q", 54) + b'{"a":{"dtype":"F32","shape":[4],"data_offsets":[0,8]}}' + bytes(8), "8 bytes for shape [4] of F32"),
], ids=["too short", "huge header", "header not JSON", "offsets disagree with shape"])
def test_malformed_safetensors_headers_name_the_file(client, model_folder, weights, expected):
    refused(upload(client, zip_bytes(model_folder, replace={"model.safetensors": weights})), 400,
            "my-model/model.safetensors", expected)


def test_weights_with_more_bytes_than_their_header_declares_are_refused(client, model_folder):
    padded = (model_folder / "model.safetensors").read_bytes() + b"\x00" * 1000
    refused(upload(client, zip_bytes(model_folder, replace={"model.safetensors": padded})), 400,
            "my-model/model.safetensors: more bytes than its safetensors header declares")
