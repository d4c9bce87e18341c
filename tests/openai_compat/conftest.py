from __future__ import annotations

import json

import pytest

from catalog.models import BaseModel, TaskFamily, WeightsSource
from tests.tiny_model import CHAT_FACTS, build_tiny_llama


@pytest.fixture(scope="session")
def tiny_llama_dir(tmp_path_factory):
    return build_tiny_llama(tmp_path_factory.mktemp("tiny-llama"))


@pytest.fixture
def media(settings, tmp_path):
    settings.MEDIA_ROOT = str(tmp_path / "media")
    settings.LATHE_CHECKPOINT_ROOT = tmp_path / "checkpoints"
    return tmp_path


@pytest.fixture
def chat_model(transactional_db, tiny_llama_dir):
    return BaseModel.objects.create(
        slug="tiny-llama", name="Tiny Llama", architecture="llama", task_family=TaskFamily.CHAT,
        source_kind=WeightsSource.PATH, source=str(tiny_llama_dir), supported_tasks=["chat"], default_max_length=64,
        context_length=256, parameter_count=60_000, chat_template_source="model", is_default=True)


def chat_jsonl(extra: list | None = None) -> bytes:
    lines = [{"messages": [{"role": "user", "content": q}, {"role": "assistant", "content": a}]} for q, a in CHAT_FACTS]
    return "".join(json.dumps(line) + "\n" for line in lines + (extra or [])).encode()
