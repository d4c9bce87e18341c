"""Artifacts are shipped as zip archives of a model folder."""
from __future__ import annotations

import os
import zipfile


def zip_folder(folder: str, archive: str) -> str:
    """`archive` holding every file under `folder`, with paths relative to it."""
    with zipfile.ZipFile(archive, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        for root, dirs, files in os.walk(folder):
            dirs.sort()
            for name in sorted(files):
                path = os.path.join(root, name)
                zf.write(path, os.path.relpath(path, folder))
    return archive
