"""Checks an uploaded model archive before anything is kept: a zip holding a
Hugging Face sequence-classification model in safetensors (never pickle), its
config, and a tokenizer that loads — every tensor present with the shape the
config implies, no custom code. Each refusal names the file, the tensor or the
limit."""
from __future__ import annotations

import json
import os
import stat
import zipfile
from dataclasses import dataclass
from pathlib import Path

PICKLE_SUFFIXES = (".bin", ".pt", ".pth", ".pkl", ".pickle", ".ckpt", ".h5", ".msgpack")
ALLOWED_SUFFIXES = (".json", ".safetensors", ".txt", ".model", ".md", ".merges")
MAX_MEMBERS = 200
TOKENIZER_FILES = ("tokenizer.json", "vocab.txt", "vocab.json")
# Buffers a checkpoint may omit (transformers rebuilds them).
OPTIONAL_KEYS = ("position_ids", "token_type_ids")


class ModelFileError(Exception):
    def __init__(self, message: str, *, code: str = "invalid_model", status: int = 400):
        super().__init__(message)
        self.message, self.code, self.status = message, code, status


@dataclass
class ModelInfo:
    model_type: str
    architecture: str
    labels: list[str]
    num_layers: int | None
    hidden_size: int | None
    parameter_count: int
    max_length: int


def safe_extract(archive, target: Path, *, max_unpacked_bytes: int) -> Path:
    """Unpack, refusing links, absolute or escaping paths, too many members and
    zip bombs; a single top folder is stepped into. Returns the model folder."""
    try:
        archive = zipfile.ZipFile(archive)  # a path or a binary file object
    except zipfile.BadZipFile:
        raise ModelFileError("The file is not a zip archive. Zip the model folder (config.json, model.safetensors, "
                             "tokenizer files).") from None
    with archive:
        members = [m for m in archive.infolist() if not m.is_dir()]
        if len(members) > MAX_MEMBERS:
            raise ModelFileError(f"The archive has {len(members)} files; at most {MAX_MEMBERS} are accepted.")
        total = sum(m.file_size for m in members)
        if total > max_unpacked_bytes:
            raise ModelFileError(f"The archive unpacks to {total} bytes; the limit is {max_unpacked_bytes}.",
                                 code="file_too_large", status=413)
        root = target.resolve()
        for member in members:
            if stat.S_ISLNK(member.external_attr >> 16):
                raise ModelFileError(f"{member.filename}: links are not accepted in a model archive.")
            resolved = (target / member.filename).resolve()
            if member.filename.startswith("/") or not str(resolved).startswith(str(root) + os.sep):
                raise ModelFileError(f"{member.filename}: the path leaves the archive's folder.")
            name = Path(member.filename).name
            if name.lower().endswith(PICKLE_SUFFIXES):
                raise ModelFileError(f"{member.filename}: pickle-based weights are refused (they can run code when loaded). "
                                     "Save with save_pretrained(..., safe_serialization=True).")
        archive.extractall(target)
    entries = [p for p in target.iterdir() if not p.name.startswith(("__MACOSX", "."))]
    if len(entries) == 1 and entries[0].is_dir():
        return entries[0]
    return target


def _load_config(folder: Path) -> dict:
    path = folder / "config.json"
    if not path.exists():
        raise ModelFileError("config.json is missing: zip the folder save_pretrained wrote.")
    try:
        config = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ModelFileError(f"config.json is not valid JSON: {exc}.") from None
    if not isinstance(config, dict) or not config.get("model_type"):
        raise ModelFileError("config.json has no model_type.")
    if config.get("auto_map"):
        raise ModelFileError("config.json asks for custom code (auto_map); only models transformers implements are accepted.")
    architectures = config.get("architectures") or []
    if not any(str(a).endswith("ForSequenceClassification") for a in architectures):
        raise ModelFileError(f"config.json architectures is {architectures or 'empty'}; a *ForSequenceClassification "
                             "model (with its trained head and id2label) is needed.")
    id2label = config.get("id2label") or {}
    if len(id2label) < 2:
        raise ModelFileError("config.json id2label names fewer than two labels.")
    return config


def _weight_files(folder: Path) -> list[Path]:
    files = sorted(folder.glob("*.safetensors"))
    if not files:
        raise ModelFileError("No .safetensors weights found (model.safetensors or shards).")
    return files


def validate_model_folder(folder: Path) -> ModelInfo:
    """Config, weights (names and shapes against the config) and tokenizer."""
    import torch
    from safetensors import safe_open
    from transformers import AutoConfig, AutoModelForSequenceClassification, AutoTokenizer

    raw = _load_config(folder)
    try:
        config = AutoConfig.from_pretrained(folder, trust_remote_code=False)
    except (ValueError, KeyError, OSError) as exc:
        raise ModelFileError(f"config.json: transformers cannot read it ({str(exc)[:300]}).") from None
    try:
        with torch.device("meta"):  # shapes only, no memory
            skeleton = AutoModelForSequenceClassification.from_config(config)
    except (ValueError, KeyError, TypeError) as exc:
        raise ModelFileError(f"config.json: model_type {raw['model_type']!r} cannot build a sequence classifier "
                             f"({str(exc)[:300]}).") from None
    expected = {k: tuple(v.shape) for k, v in skeleton.state_dict().items()}
    found: dict[str, tuple] = {}
    for path in _weight_files(folder):
        try:
            with safe_open(str(path), framework="pt") as handle:
                for key in handle.keys():
                    found[key] = tuple(handle.get_slice(key).get_shape())
        except Exception as exc:  # a truncated or foreign file: safetensors raises its own error types
            raise ModelFileError(f"{path.name}: not a readable safetensors file ({str(exc)[:200]}).") from None
    for key, shape in found.items():
        if key not in expected:
            raise ModelFileError(f"{key}: unexpected tensor for a {raw['model_type']} model with this config.")
        if shape != expected[key]:
            raise ModelFileError(f"{key}: shape {list(shape)} does not match the config, which implies {list(expected[key])}.")
    tied = {k for k in expected if k.endswith(OPTIONAL_KEYS)}
    missing = sorted(k for k in expected if k not in found and k not in tied)
    if missing:
        raise ModelFileError(f"{len(missing)} tensor(s) missing, e.g. {', '.join(missing[:3])}.")
    # transformers builds an empty tokenizer (every word unknown) when the files
    # are missing, so their presence is checked first.
    if not any((folder / name).exists() for name in TOKENIZER_FILES) and not list(folder.glob("*.model")):
        raise ModelFileError(f"No tokenizer files ({', '.join(TOKENIZER_FILES)} or a sentencepiece .model): "
                             "save the tokenizer into the folder too (tokenizer.save_pretrained).")
    try:
        tokenizer = AutoTokenizer.from_pretrained(folder, trust_remote_code=False)
        encoded = tokenizer("Lathe checks this tokenizer.")["input_ids"]
    except Exception as exc:  # tokenizers raise many types for broken files
        raise ModelFileError(f"The tokenizer does not load ({str(exc)[:300]}); include tokenizer.json or vocab files.") from None
    vocab = getattr(config, "vocab_size", None)
    if vocab and max(encoded) >= vocab:
        raise ModelFileError(f"The tokenizer produces id {max(encoded)}, beyond the model's vocab_size {vocab}.")
    labels = [str(config.id2label[i]) for i in range(config.num_labels)]
    if len(set(labels)) != len(labels):
        raise ModelFileError("config.json id2label has duplicate label names.")
    limit = min(512, int(getattr(config, "max_position_embeddings", 512) or 512), int(tokenizer.model_max_length or 512))
    return ModelInfo(model_type=raw["model_type"], architecture=raw["architectures"][0], labels=labels,
                     num_layers=getattr(config, "num_hidden_layers", None), hidden_size=getattr(config, "hidden_size", None),
                     parameter_count=sum(int(torch.Size(s).numel()) for s in found.values()), max_length=limit)
