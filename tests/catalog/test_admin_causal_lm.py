"""Operators add a causal LM to the catalog in admin: the folder (or storage
prefix) is checked on save — a supported architecture, safetensors only, a
tokenizer with a chat template or Lathe's documented default — and the facts
(architecture, context length, parameter count) are read from it."""
from __future__ import annotations

import json
import shutil

import pytest
from django.urls import reverse

from catalog.models import BaseModel
from catalog.validation import SUPPORTED_CAUSAL_LM_ARCHITECTURES
from tests.chat_tokenizer import build_tiny_causal_lm

pytestmark = pytest.mark.django_db


@pytest.fixture(scope="module")
def tiny_lm_dir(tmp_path_factory):
    return build_tiny_causal_lm(tmp_path_factory.mktemp("tiny-lm"))


@pytest.fixture
def lm_copy(tiny_lm_dir, tmp_path):
    target = tmp_path / "model"
    shutil.copytree(tiny_lm_dir, target)
    return target


@pytest.fixture
def operator_client(client, make_user):
    client.force_login(make_user(email="ops@lathe.local", is_staff=True, is_superuser=True))
    return client


def form(source, **overrides):
    data = {"name": "Tiny LM", "slug": "tiny-lm", "task_family": "chat", "is_active": "on", "source_kind": "path",
            "source": str(source), "hub_id": "", "license": "apache-2.0", "notes": "", "architecture": "",
            "parameter_count": "", "context_length": "", "supported_tasks": "[]", "default_max_length": "512",
            "default_hyperparameters": "{}"}
    data.update(overrides)
    return {k: v for k, v in data.items() if v is not None}


def add(operator_client, data):
    return operator_client.post(reverse("admin:catalog_basemodel_add"), data)


def errors_of(response) -> str:
    assert response.status_code == 200, "the form was accepted"
    return response.content.decode()


def test_a_causal_lm_folder_is_checked_and_its_facts_read(operator_client, lm_copy):
    from safetensors import safe_open

    response = add(operator_client, form(lm_copy))
    assert response.status_code == 302, response.content.decode()[:3000]
    model = BaseModel.objects.get(slug="tiny-lm")
    with safe_open(str(lm_copy / "model.safetensors"), "pt") as weights:
        parameters = sum(weights.get_tensor(k).numel() for k in weights.keys())
    assert (model.architecture, model.context_length, model.parameter_count) == ("llama", 64, parameters)
    assert model.chat_template_source == "model" and model.supported_tasks == ["chat"]
    assert model.job_kinds == ("chat_finetune",)
    assert "<|im_start|>" in model.chat_template()


def test_a_context_longer_than_the_configs_is_refused(operator_client, lm_copy):
    assert "allows at most 64 tokens" in errors_of(add(operator_client, form(lm_copy, context_length="4096")))
    assert add(operator_client, form(lm_copy, context_length="32")).status_code == 302
    assert BaseModel.objects.get(slug="tiny-lm").context_length == 32


@pytest.mark.parametrize("name", ["pytorch_model.bin", "model.pt", "model.Q4_1.gguf"])
def test_weights_other_than_safetensors_are_refused(operator_client, lm_copy, name):
    (lm_copy / name).write_bytes(b"not looked at")
    page = errors_of(add(operator_client, form(lm_copy)))
    assert f"{name}: Lathe reads weights as safetensors only" in page
    assert not BaseModel.objects.filter(slug="tiny-lm").exists()


def test_an_unsupported_architecture_is_refused_naming_the_supported(operator_client, lm_copy):
    config = json.loads((lm_copy / "config.json").read_text())
    (lm_copy / "config.json").write_text(json.dumps({**config, "architectures": ["GPT2LMHeadModel"]}))
    page = errors_of(add(operator_client, form(lm_copy)))
    assert "names architecture GPT2LMHeadModel" in page and "LlamaForCausalLM, MistralForCausalLM" in page


def test_no_weights_no_config_no_tokenizer_broken_weights(operator_client, lm_copy, tmp_path):
    (lm_copy / "model.safetensors").write_bytes(b"\xff" * 16)
    assert "is not a safetensors file" in errors_of(add(operator_client, form(lm_copy)))
    (lm_copy / "model.safetensors").unlink()
    assert "No weights in" in errors_of(add(operator_client, form(lm_copy)))
    (lm_copy / "config.json").unlink()
    assert "No config.json in" in errors_of(add(operator_client, form(lm_copy)))
    assert "is not a folder on this machine" in errors_of(add(operator_client, form(tmp_path / "nowhere")))


def test_a_tokenizer_without_a_chat_template_needs_the_default_ticked(operator_client, tiny_lm_dir, tmp_path):
    folder = build_tiny_causal_lm(tmp_path / "plain", chat_template=None)
    assert not (folder / "chat_template.jinja").exists()
    page = errors_of(add(operator_client, form(folder)))
    assert "The tokenizer has no chat template" in page and "default chat template" in page
    response = add(operator_client, form(folder, use_default_chat_template="on"))
    assert response.status_code == 302
    model = BaseModel.objects.get(slug="tiny-lm")
    from catalog.chat_templates import DEFAULT_CHAT_TEMPLATE

    assert model.chat_template_source == "default" and model.chat_template() == DEFAULT_CHAT_TEMPLATE


def test_a_chat_model_must_be_on_this_installation(operator_client, lm_copy):
    page = errors_of(add(operator_client, form("someone/some-model", source_kind="hub")))
    assert "must be on this installation" in page


def test_a_storage_prefix_is_copied_once_and_checked(operator_client, tiny_lm_dir, settings, tmp_path):
    from django.core.files.base import ContentFile
    from django.core.files.storage import default_storage

    settings.MEDIA_ROOT = str(tmp_path / "bucket")
    settings.LATHE_MODELS_DIR = str(tmp_path / "models")
    for path in tiny_lm_dir.iterdir():
        default_storage.save(f"base-models/tiny/{path.name}", ContentFile(path.read_bytes()))
    response = add(operator_client, form("base-models/tiny", source_kind="storage"))
    assert response.status_code == 302, response.content.decode()[:2000]
    model = BaseModel.objects.get(slug="tiny-lm")
    local = model.local_path()
    assert local.startswith(str(tmp_path / "models" / "storage")) and model.load_tokenizer().chat_template
    assert "Nothing is stored under" in errors_of(add(operator_client, form("base-models/none", source_kind="storage",
                                                                           slug="other", name="Other")))


def test_one_default_model_per_family(operator_client, lm_copy):
    BaseModel.objects.create(slug="first-chat", name="First chat", architecture="llama", task_family="chat",
                             source_kind="path", source=str(lm_copy), is_default=True)
    page = errors_of(add(operator_client, form(lm_copy, is_default="on")))
    assert "First chat is already the default chat model" in page


def test_the_supported_architectures_are_transformers_classes():
    import transformers

    for name in SUPPORTED_CAUSAL_LM_ARCHITECTURES:
        assert hasattr(transformers, name), name


def test_the_qwen2_architecture_is_accepted(operator_client, tmp_path):
    folder = build_tiny_causal_lm(tmp_path / "qwen", architecture="qwen2")
    assert add(operator_client, form(folder)).status_code == 302
    assert BaseModel.objects.get(slug="tiny-lm").architecture == "qwen2"
