"""Zipped model folders as a customer would upload them: a tiny
BertForSequenceClassification saved with save_pretrained (safetensors), its
tokenizer, and ways to break each part."""
from __future__ import annotations

import io
import json
import zipfile
from pathlib import Path

from tests.tiny_model import build_tiny_classifier

# The first four labels of tests/fixtures/banking77_slice.csv, as the jobs tests' dataset has them.
DEFAULT_LABELS = ("Refund_not_showing_up", "activate_my_card", "age_limit", "apple_pay_or_google_pay")


def tiny_classifier_folder(folder: Path, labels=DEFAULT_LABELS, layers: int = 2) -> Path:
    build_tiny_classifier(folder, labels, layers=layers)
    return folder


def zip_bytes(folder: Path, *, top: str | None = "my-model", skip=(), extra: dict[str, bytes] | None = None,
              replace: dict[str, bytes] | None = None) -> bytes:
    """The folder zipped (under one top folder, as zipping a folder does), with
    files skipped, replaced or added."""
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as archive:
        for path in sorted(folder.iterdir()):
            if path.name in skip:
                continue
            data = (replace or {}).get(path.name, path.read_bytes())
            archive.writestr(f"{top}/{path.name}" if top else path.name, data)
        for name, data in (extra or {}).items():
            archive.writestr(name, data)
    return out.getvalue()


def edited_config(folder: Path, **changes) -> bytes:
    config = json.loads((folder / "config.json").read_text())
    config.update(changes)
    return json.dumps(config).encode()
