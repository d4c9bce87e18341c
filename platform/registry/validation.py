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
import zlib
from dataclasses import dataclass
from pathlib import Path

PICKLE_SUFFIXES = (".bin", ".pt", ".pth", ".pkl", ".pickle", ".ckpt", ".h5", ".msgpack")
ALLOWED_SUFFIXES = (".json", ".safetensors", ".txt", ".model", ".md", ".merges")
MAX_MEMBERS = 200
CHUNK_BYTES = 1 << 20
MAX_SAFETENSORS_HEADER_BYTES = 16 * 1000 * 1000
# safetensors dtypes and their sizes in bytes.
DTYPE_BYTES = {"BOOL": 1, "U8": 1, "I8": 1, "F8_E5M2": 1, "F8_E4M3": 1, "I16": 2, "U16": 2, "F16": 2, "BF16": 2,
               "I32": 4, "U32": 4, "F32": 4, "I64": 8, "U64": 8, "F64": 8}
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


class _Budget:
    """Real bytes written while unpacking (never the sizes the zip declares)."""

    def __init__(self, limit: int, reason: str, code: str, status: int):
        self.limit, self.reason, self.code, self.status, self.used = limit, reason, code, status, 0

    def refusal(self, what: str) -> ModelFileError:
        return ModelFileError(f"The archive unpacks to more than {_human(self.limit)}, {self.reason} ({what}). "
                              "Nothing was kept.", code=self.code, status=self.status)

    def spend(self, n: int, member: str) -> None:
        self.used += n
        if self.used > self.limit:
            raise self.refusal(f"stopped while unpacking {member}")


def _human(n: float) -> str:
    from corpora.parsing import human_bytes  # Django-free

    return human_bytes(n)


def _damaged(member: str, exc: BaseException) -> ModelFileError:
    return ModelFileError(f"{member}: damaged in the archive ({str(exc)[:200] or type(exc).__name__}). "
                          "Zip the model folder again.")


# What reading a member may raise on a broken archive (bad CRC, sizes that do not
# match the data, an unknown compression method, a password).
_READ_ERRORS = (zipfile.BadZipFile, zlib.error, EOFError, OSError, ValueError, NotImplementedError, RuntimeError)


def _read(src, n: int, member: str) -> bytes:
    try:
        return src.read(n)
    except _READ_ERRORS as exc:
        raise _damaged(member, exc) from None


def _open(archive: zipfile.ZipFile, member: zipfile.ZipInfo):
    try:
        return archive.open(member)
    except _READ_ERRORS as exc:
        raise _damaged(member.filename, exc) from None


def _unpack(archive, member: zipfile.ZipInfo, dest: Path, budget: _Budget, *, expected: int | None = None) -> None:
    """Stream one member to `dest`, counting what really comes out; CRCs are
    checked by zipfile at the member's end."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    written = 0
    with _open(archive, member) as src, open(dest, "xb") as out:
        while chunk := _read(src, CHUNK_BYTES, member.filename):
            written += len(chunk)
            if expected is not None and written > expected:
                raise ModelFileError(f"{member.filename}: more bytes than its safetensors header declares "
                                     f"({_human(expected)}); the file is damaged or padded.")
            budget.spend(len(chunk), member.filename)
            out.write(chunk)
    if expected is not None and written != expected:
        raise ModelFileError(f"{member.filename}: not a readable safetensors file (it ends after {written:,} bytes; "
                             f"its header declares {expected:,}).")


@dataclass
class WeightHeader:
    """A safetensors file's header, read from the archive before its data."""
    name: str
    tensors: dict  # tensor name -> shape
    header_bytes: int
    data_bytes: int

    @property
    def file_bytes(self) -> int:
        return 8 + self.header_bytes + self.data_bytes


def _read_weight_header(archive, member: zipfile.ZipInfo, room: int) -> WeightHeader:
    name = member.filename

    def unreadable(detail: str) -> ModelFileError:
        return ModelFileError(f"{name}: not a readable safetensors file ({detail}).")

    with _open(archive, member) as src:
        head = _read(src, 8, name)
        if len(head) < 8:
            raise unreadable(f"{len(head)} bytes, shorter than a header")
        size, most = int.from_bytes(head, "little"), min(MAX_SAFETENSORS_HEADER_BYTES, room)
        if size > most:
            raise unreadable(f"its header claims {size:,} bytes; at most {most:,} are accepted here")
        raw = _read(src, size, name)
    if len(raw) < size:
        raise unreadable(f"the file ends inside its {size:,}-byte header")
    try:
        header = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError):
        raise unreadable("its header is not JSON") from None
    if not isinstance(header, dict):
        raise unreadable("its header is not a JSON object")
    tensors, spans = {}, []
    for key, entry in header.items():
        if key == "__metadata__":
            continue
        dtype = entry.get("dtype") if isinstance(entry, dict) else None
        shape = entry.get("shape") if isinstance(entry, dict) else None
        offsets = entry.get("data_offsets") if isinstance(entry, dict) else None
        if (dtype not in DTYPE_BYTES or not isinstance(shape, list)
                or not all(isinstance(d, int) and not isinstance(d, bool) and 0 <= d < 2**48 for d in shape)
                or not isinstance(offsets, list) or len(offsets) != 2
                or not all(isinstance(o, int) and not isinstance(o, bool) and 0 <= o for o in offsets)):
            raise unreadable(f"tensor {key[:100]!r} has no valid dtype, shape and data_offsets")
        begin, end = offsets
        numel = 1
        for d in shape:
            numel *= d
        if end - begin != numel * DTYPE_BYTES[dtype]:
            raise unreadable(f"tensor {key[:100]!r}: {end - begin:,} bytes for shape {shape} of {dtype}")
        tensors[key] = tuple(shape)
        spans.append((begin, end))
    position = 0
    for begin, end in sorted(spans):
        if begin != position:
            raise unreadable("its tensors overlap or leave gaps in the data")
        position = end
    return WeightHeader(name=name, tensors=tensors, header_bytes=size, data_bytes=position)


def _members(archive: zipfile.ZipFile) -> list[zipfile.ZipInfo]:
    """The files to unpack (macOS resource forks and hidden files skipped), checked by name."""
    members, seen = [], set()
    for member in archive.infolist():
        parts = [p for p in member.filename.replace("\\", "/").split("/") if p]
        if member.is_dir() or not parts or parts[0] == "__MACOSX" or any(p.startswith(".") and p != ".." for p in parts):
            continue
        members.append(member)
    if not members:
        raise ModelFileError("The archive is empty: zip the folder save_pretrained wrote (config.json, "
                             "model.safetensors, tokenizer files).")
    if len(members) > MAX_MEMBERS:
        raise ModelFileError(f"The archive has {len(members)} files; at most {MAX_MEMBERS} are accepted.")
    for member in members:
        if member.filename in seen:
            raise ModelFileError(f"{member.filename}: the archive holds this file twice.")
        seen.add(member.filename)
        if stat.S_ISLNK(member.external_attr >> 16):
            raise ModelFileError(f"{member.filename}: links are not accepted in a model archive.")
        if member.flag_bits & 0x1:
            raise ModelFileError(f"{member.filename}: encrypted; zip the model folder without a password.")
        name = Path(member.filename).name
        if name.lower().endswith(PICKLE_SUFFIXES):
            raise ModelFileError(f"{member.filename}: pickle-based weights are refused (they can run code when loaded). "
                                 "Save with save_pretrained(..., safe_serialization=True).")
    return members


def safe_extract(archive, target: Path, *, max_unpacked_bytes: int, limit_reason: str = "the limit for an unpacked model",
                 limit_code: str = "file_too_large", limit_status: int = 413, check_headers=None) -> Path:
    """Unpack, refusing links, absolute or escaping paths, duplicates, too many
    members, damaged members (bad CRC, sizes that do not match the data) and zip
    bombs: the bytes really written are counted and unpacking stops at
    `max_unpacked_bytes`, whatever the archive declares. Every other file comes
    out first; then each safetensors header is read and checked (offsets,
    dtypes, total size against what is left), and `check_headers(folder,
    headers)` may refuse the model before any weights are written. A single top
    folder is stepped into. Returns the model folder."""
    try:
        archive = zipfile.ZipFile(archive)  # a path or a binary file object
    except (zipfile.BadZipFile, zipfile.LargeZipFile, OSError, ValueError, EOFError):
        raise ModelFileError("The file is not a zip archive (or its directory is damaged). Zip the model folder "
                             "(config.json, model.safetensors, tokenizer files).") from None
    budget = _Budget(max_unpacked_bytes, limit_reason, limit_code, limit_status)
    target.mkdir(parents=True, exist_ok=True)
    root = target.resolve()
    with archive:
        members = _members(archive)
        destinations = {}
        for member in members:
            resolved = (target / member.filename).resolve()
            if member.filename.startswith(("/", "\\")) or not str(resolved).startswith(str(root) + os.sep):
                raise ModelFileError(f"{member.filename}: the path leaves the archive's folder.")
            destinations[member.filename] = resolved
        tops = {Path(m.filename).parts[0] for m in members}
        single_top = len(tops) == 1 and all(len(Path(m.filename).parts) > 1 for m in members)
        folder = target / tops.pop() if single_top else target
        weights = [m for m in members if m.filename.lower().endswith(".safetensors")]
        for member in members:
            if member not in weights:
                _unpack(archive, member, destinations[member.filename], budget)
        headers = [_read_weight_header(archive, m, max(0, budget.limit - budget.used)) for m in weights]
        declared = sum(h.file_bytes for h in headers)
        if budget.used + declared > budget.limit:
            raise budget.refusal(f"the safetensors headers declare {_human(declared)} of weights")
        if check_headers is not None:
            check_headers(folder, headers)
        for member, header in zip(weights, headers):
            _unpack(archive, member, destinations[member.filename], budget, expected=header.file_bytes)
    return folder


def check_weight_headers(folder: Path, headers: list[WeightHeader]) -> None:
    """Config and every tensor's name and shape, from the headers alone: a model
    that cannot load is refused before its weights are unpacked."""
    if not headers:
        raise ModelFileError("No .safetensors weights found (model.safetensors or shards).")
    raw, expected = _expected_tensors(folder)
    found: dict[str, tuple] = {}
    for header in headers:
        for key, shape in header.tensors.items():
            if key in found:
                raise ModelFileError(f"{key}: stored twice (in {header.name} and another shard).")
            found[key] = shape
    _compare_tensors(found, expected, raw)


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


def _expected_tensors(folder: Path) -> tuple[dict, dict]:
    """(config.json as read, {tensor name: shape} the config implies)."""
    import torch
    from transformers import AutoConfig, AutoModelForSequenceClassification

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
    return raw, {k: tuple(v.shape) for k, v in skeleton.state_dict().items()}


def _compare_tensors(found: dict, expected: dict, raw: dict) -> None:
    for key, shape in found.items():
        if key not in expected:
            raise ModelFileError(f"{key}: unexpected tensor for a {raw['model_type']} model with this config.")
        if shape != expected[key]:
            raise ModelFileError(f"{key}: shape {list(shape)} does not match the config, which implies {list(expected[key])}.")
    tied = {k for k in expected if k.endswith(OPTIONAL_KEYS)}
    missing = sorted(k for k in expected if k not in found and k not in tied)
    if missing:
        raise ModelFileError(f"{len(missing)} tensor(s) missing, e.g. {', '.join(missing[:3])}.")


def validate_model_folder(folder: Path) -> ModelInfo:
    """Config, weights (names and shapes against the config) and tokenizer."""
    import torch
    from safetensors import safe_open
    from transformers import AutoConfig, AutoTokenizer

    raw, expected = _expected_tensors(folder)
    config = AutoConfig.from_pretrained(folder, trust_remote_code=False)
    found: dict[str, tuple] = {}
    for path in _weight_files(folder):
        try:
            with safe_open(str(path), framework="pt") as handle:
                for key in handle.keys():
                    found[key] = tuple(handle.get_slice(key).get_shape())
        except Exception as exc:  # a truncated or foreign file: safetensors raises its own error types
            raise ModelFileError(f"{path.name}: not a readable safetensors file ({str(exc)[:200]}).") from None
    _compare_tensors(found, expected, raw)
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
