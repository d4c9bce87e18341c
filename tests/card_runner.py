"""Model cards as a customer uses them: unzip the downloaded archive, check
that every file the card names is in it, and run the card's Python in a fresh
interpreter from the unzipped folder (`folder = "."` as printed), offline
(HF_HUB_OFFLINE=1), with every warning an error (`-W error`, imports included:
none of torch, transformers, peft, onnxruntime warns at import time here)."""
from __future__ import annotations

import io
import json
import os
import re
import subprocess
import sys
import zipfile
from pathlib import Path

# A path a card names: a backticked file name with an extension, or an f"{folder}/…" reference.
NAMED_FILE = re.compile(r"`([\w./-]+\.(?:json|safetensors|onnx|txt|md|zip|model))`|\{folder\}/([\w./-]+)")


def unzip(archive: bytes, target: Path) -> tuple[Path, list[str]]:
    with zipfile.ZipFile(io.BytesIO(archive)) as zf:
        members = zf.namelist()
        zf.extractall(target)
    return target, members


def code_blocks(card: str) -> list[str]:
    return re.findall(r"```python\n(.*?)```", card, re.S)


def named_files(card: str) -> set[str]:
    return {a or b for a, b in NAMED_FILE.findall(card)}


def check_named_files(card: str, members: list[str], downloads: set[str]) -> None:
    """Every file the card names is in this archive; every .zip it names is one of the job's downloads."""
    for name in named_files(card):
        if name.endswith(".zip"):
            assert name in downloads, f"the card names the download {name!r}; the job has {sorted(downloads)}"
        else:
            assert name in members, f"the card names {name!r}, which the archive does not hold: {sorted(members)}"
    assert not re.search(r'"(model|model-onnx|adapter)/?"', card), "the card names a folder the archive does not contain"


def run_card(code: str, folder: Path, *, replace: dict[str, str] | None = None, after: str = "") -> dict:
    """Run `code` (lines `name = "…"` replaced as given) from `folder`; returns
    {"label": …} plus whatever `after` puts in `result`. Fails on any warning."""
    for name, value in (replace or {}).items():
        code, count = re.subn(rf'^{name} = "[^"]*"', f"{name} = {value!r}", code, flags=re.M)
        assert count == 1, f"the card has no line `{name} = \"…\"`"
    script = folder / "_card.py"
    script.write_text(code + "\nresult = {'label': label}\n" + after + "\nimport json\nprint('RESULT' + json.dumps(result))\n")
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "PYTHONPATH": ""}
    done = subprocess.run([sys.executable, "-W", "error", str(script)], cwd=folder, env=env, capture_output=True,
                          text=True, timeout=300)
    script.unlink()
    assert done.returncode == 0, done.stderr[-4000:]
    assert "Warning" not in done.stderr, done.stderr[-4000:]  # e.g. a ResourceWarning printed from a finalizer
    line = next(line for line in done.stdout.splitlines() if line.startswith("RESULT"))
    return json.loads(line.removeprefix("RESULT"))
