"""Dataset fixtures: media in a temporary folder, a tiny tokenizer the tests
build themselves (no hub), and an upload helper over the real API."""
from __future__ import annotations

from pathlib import Path

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile

from catalog.models import BaseModel, WeightsSource

from tests.tiny_model import SLICE  # noqa: F401  (re-exported for the tests)


@pytest.fixture(autouse=True)
def media_root(settings, tmp_path):
    settings.MEDIA_ROOT = str(tmp_path / "media")
    return Path(settings.MEDIA_ROOT)


def stored_files(media_root: Path) -> list[Path]:
    return [p for p in media_root.rglob("*") if p.is_file()] if media_root.exists() else []


@pytest.fixture(scope="session")
def tiny_tokenizer_dir(tmp_path_factory):
    """A WordPiece tokenizer over the slice's vocabulary, saved like a model's."""
    from tests.tiny_model import build_tokenizer

    folder = tmp_path_factory.mktemp("tiny-tokenizer")
    build_tokenizer(folder)
    return folder


@pytest.fixture
def tiny_model(db, tiny_tokenizer_dir):
    return BaseModel.objects.create(slug="tiny-bert", name="Tiny BERT", architecture="bert", source_kind=WeightsSource.PATH,
                                    source=str(tiny_tokenizer_dir), supported_tasks=["text_classification"], default_max_length=16)


@pytest.fixture
def uploader(tenant_a, api_for):
    client = api_for(tenant_a.key(scopes=["write"]))

    def upload(name: str, content: bytes, url: str = "/api/v1/datasets", **fields):
        return client.post(url, {"file": SimpleUploadedFile(name, content), **fields}, format="multipart")

    upload.client = client
    return upload
