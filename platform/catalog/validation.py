"""Checks a causal language model folder (save_pretrained layout) before it joins
the catalog, and reads the facts the catalog shows: architecture, context length,
parameter count, where the chat template comes from.

Free of Django. Weights are safetensors only: pickle-based files (.bin, .pt, …)
can run code when loaded, and a GGUF file must be converted first. The weights'
headers are read, never the tensors, so checking a multi-gigabyte model is quick.
"""
from __future__ import annotations

import json
import struct
from dataclasses import dataclass
from pathlib import Path

# Causal LMs with a LLaMA-style layout (q/k/v/o and gate/up/down projections: the worker's LoRA targets),
# each a class that transformers has.
SUPPORTED_CAUSAL_LM_ARCHITECTURES = (
    "LlamaForCausalLM", "MistralForCausalLM", "Qwen2ForCausalLM", "Qwen3ForCausalLM", "Gemma2ForCausalLM",
)
REFUSED_WEIGHT_SUFFIXES = (".bin", ".pt", ".pth", ".ckpt", ".pkl", ".pickle", ".h5", ".msgpack", ".gguf", ".npz")
ACCEPTED_DTYPES = {"F32", "F16", "BF16"}
MAX_CONFIG_BYTES = 1_000_000
MAX_HEADER_BYTES = 100_000_000
TOKENIZER_FILES = ("tokenizer.json", "tokenizer.model", "vocab.json", "spiece.model")
PROBE_CONVERSATION = [{"role": "user", "content": "Hello there"}, {"role": "assistant", "content": "General Kenobi"}]


class ModelFolderError(Exception):
    """What is wrong with the folder, in words an operator can act on; `field` names the admin field."""

    def __init__(self, message: str, *, field: str = "source"):
        super().__init__(message)
        self.message, self.field = message, field


@dataclass
class CausalLMFacts:
    architecture: str  # the config's class, e.g. LlamaForCausalLM
    model_type: str  # e.g. llama
    context_length: int | None
    parameter_count: int
    chat_template_source: str  # "model" or "default"
    weight_files: list[str]


def _config(folder: Path) -> dict:
    path = folder / "config.json"
    if not path.is_file():
        raise ModelFolderError(f"No config.json in {folder}: give a folder written by save_pretrained.")
    if path.stat().st_size > MAX_CONFIG_BYTES:
        raise ModelFolderError(f"config.json is {path.stat().st_size:,} bytes; a model config is far smaller.")
    try:
        config = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError) as exc:
        raise ModelFolderError(f"config.json is not valid JSON ({type(exc).__name__}).") from None
    if not isinstance(config, dict):
        raise ModelFolderError("config.json must hold a JSON object.")
    return config


def _architecture(config: dict) -> str:
    architectures = config.get("architectures")
    names = [a for a in architectures if isinstance(a, str)] if isinstance(architectures, list) else []
    supported = [a for a in names if a in SUPPORTED_CAUSAL_LM_ARCHITECTURES]
    if not supported:
        found = ", ".join(names) or "none"
        raise ModelFolderError(
            f"config.json names architecture {found}; Lathe fine-tunes chat models of these architectures: "
            f"{', '.join(SUPPORTED_CAUSAL_LM_ARCHITECTURES)}.")
    return supported[0]


def read_safetensors_header(path: Path) -> dict:
    """The tensors of a safetensors file as {name: {"dtype", "shape", "data_offsets"}}, checked against the file's size."""
    size = path.stat().st_size
    with open(path, "rb") as fh:
        raw = fh.read(8)
        if len(raw) < 8:
            raise ModelFolderError(f"{path.name} is not a safetensors file (too short).")
        (length,) = struct.unpack("<Q", raw)
        if length > MAX_HEADER_BYTES or 8 + length > size:
            raise ModelFolderError(f"{path.name} is not a safetensors file (its header length is {length:,} bytes).")
        try:
            header = json.loads(fh.read(length))
        except (UnicodeDecodeError, ValueError, RecursionError):
            raise ModelFolderError(f"{path.name} is not a safetensors file (its header is not JSON).") from None
    if not isinstance(header, dict):
        raise ModelFolderError(f"{path.name} is not a safetensors file (its header is not an object).")
    header.pop("__metadata__", None)
    end = 0
    for name, tensor in header.items():
        if not isinstance(tensor, dict) or not isinstance(tensor.get("shape"), list) or \
                not isinstance(tensor.get("data_offsets"), list) or len(tensor["data_offsets"]) != 2:
            raise ModelFolderError(f"{path.name}: tensor '{name[:80]}' has a malformed header entry.")
        if tensor.get("dtype") not in ACCEPTED_DTYPES:
            raise ModelFolderError(
                f"{path.name}: tensor '{name[:80]}' is {tensor.get('dtype')}; Lathe trains float32, float16 or "
                "bfloat16 weights (de-quantize a quantized model first).")
        end = max(end, int(tensor["data_offsets"][1]))
    if 8 + length + end > size:
        raise ModelFolderError(f"{path.name} is truncated: its header describes {end:,} bytes of data that are not there.")
    return header


def _weights(folder: Path) -> tuple[list[str], int]:
    refused = sorted(p.name for p in folder.iterdir() if p.is_file() and p.name.lower().endswith(REFUSED_WEIGHT_SUFFIXES))
    if refused:
        raise ModelFolderError(
            f"{', '.join(refused)}: Lathe reads weights as safetensors only (pickle-based files can run code when "
            "loaded, GGUF files must be converted). Save the model with save_pretrained(safe_serialization=True).")
    index = folder / "model.safetensors.index.json"
    if index.is_file():
        try:
            weight_map = json.loads(index.read_text(encoding="utf-8")).get("weight_map") or {}
        except (UnicodeDecodeError, ValueError, RecursionError, AttributeError):
            raise ModelFolderError("model.safetensors.index.json is not valid JSON.") from None
        files = sorted(set(weight_map.values())) if isinstance(weight_map, dict) else []
        missing = [f for f in files if not isinstance(f, str) or "/" in f or not (folder / f).is_file()]
        if missing or not files:
            raise ModelFolderError(f"model.safetensors.index.json names shard(s) that are not in the folder: "
                                   f"{', '.join(map(str, missing[:5])) or 'none listed'}.")
    else:
        files = sorted(p.name for p in folder.glob("*.safetensors"))
    if not files:
        raise ModelFolderError(f"No weights in {folder}: expected model.safetensors (or shards with an index).")
    parameters = 0
    for name in files:
        for tensor in read_safetensors_header(folder / name).values():
            count = 1
            for dim in tensor["shape"]:
                count *= int(dim)
            parameters += count
    return files, parameters


def _template_in_files(folder: Path) -> bool:
    if (folder / "chat_template.jinja").is_file() or (folder / "chat_template.json").is_file():
        return True
    config = folder / "tokenizer_config.json"
    if config.is_file():
        try:
            return bool(json.loads(config.read_text(encoding="utf-8")).get("chat_template"))
        except (UnicodeDecodeError, ValueError, RecursionError, AttributeError):
            raise ModelFolderError("tokenizer_config.json is not valid JSON.", field="source") from None
    return False


def inspect_causal_lm(folder: Path | str, *, allow_default_template: bool = False) -> CausalLMFacts:
    """The facts of a causal LM folder, or ModelFolderError naming the first problem.
    Loads the tokenizer (offline) and renders a probe conversation with the template."""
    folder = Path(folder)
    if not folder.is_dir():
        raise ModelFolderError(f"{folder} is not a folder on this machine.")
    config = _config(folder)
    architecture = _architecture(config)
    files, parameters = _weights(folder)
    if not any((folder / name).is_file() for name in TOKENIZER_FILES):
        raise ModelFolderError(f"No tokenizer in {folder}: expected tokenizer.json (save the tokenizer with "
                               "save_pretrained into the same folder).")
    has_template = _template_in_files(folder)
    if not has_template and not allow_default_template:
        raise ModelFolderError(
            "The tokenizer has no chat template (no chat_template.jinja, no chat_template in tokenizer_config.json). "
            "Add the model's template, or tick 'Use Lathe's default chat template' (ChatML, see docs/datasets.md).",
            field="use_default_chat_template")
    try:
        from transformers import AutoTokenizer

        tokenizer = AutoTokenizer.from_pretrained(str(folder), use_fast=True, local_files_only=True)
    except Exception as exc:  # transformers raises many kinds for a broken tokenizer
        raise ModelFolderError(f"The tokenizer in {folder} does not load ({type(exc).__name__}: {str(exc)[:200]}).") from None
    template = tokenizer.chat_template if has_template else None
    if template is None:
        from .chat_templates import DEFAULT_CHAT_TEMPLATE

        template = DEFAULT_CHAT_TEMPLATE
    try:
        rendered = tokenizer.apply_chat_template(PROBE_CONVERSATION, chat_template=template, tokenize=False)
    except Exception as exc:
        raise ModelFolderError(f"The chat template does not render a user/assistant conversation "
                               f"({type(exc).__name__}: {str(exc)[:200]}).", field="source") from None
    if not isinstance(rendered, str) or any(m["content"] not in rendered for m in PROBE_CONVERSATION):
        raise ModelFolderError("The chat template leaves the messages' content out of what it renders.")
    context = config.get("max_position_embeddings") or config.get("max_sequence_length") or config.get("n_positions")
    return CausalLMFacts(
        architecture=architecture, model_type=str(config.get("model_type") or "")[:60],
        context_length=int(context) if isinstance(context, int) and context > 0 else None,
        parameter_count=parameters, chat_template_source="model" if has_template else "default", weight_files=files)
