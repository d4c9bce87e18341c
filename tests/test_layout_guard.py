"""`platform/` is a source root, never a package, and nothing we put on sys.path
may shadow a standard-library module or an installed distribution."""
from __future__ import annotations

import importlib.metadata
import os
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]
SOURCE_ROOTS = [REPO_ROOT, REPO_ROOT / "platform"]


def importable_names(folder: Path) -> set[str]:
    """Top-level names a folder on sys.path would provide: modules and any
    directory holding Python code (a package or a namespace portion)."""
    names = set()
    for entry in folder.iterdir():
        if entry.name.startswith((".", "_")):
            continue
        if entry.is_file() and entry.suffix == ".py":
            names.add(entry.stem)
        elif entry.is_dir() and any(entry.rglob("*.py")):
            names.add(entry.name)
    return names


def installed_top_level_names() -> set[str]:
    names = set(importlib.metadata.packages_distributions())
    for dist in importlib.metadata.distributions():
        name = dist.metadata["Name"]
        if name:
            names.add(name.lower().replace("-", "_"))
    return names


def test_platform_folder_is_not_a_package():
    assert not (REPO_ROOT / "platform" / "__init__.py").exists()
    assert (REPO_ROOT / "platform" / "config").is_dir()


@pytest.mark.parametrize("cwd", [REPO_ROOT, REPO_ROOT / "platform"])
def test_stdlib_platform_module_imports_and_works(cwd):
    """From the repo root (and from inside platform/), with both source roots on
    the path exactly as manage.py puts them, `platform` is still the stdlib's."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(str(p) for p in SOURCE_ROOTS)}
    code = (
        "import platform, sys; "
        "print(platform.__file__); print(platform.python_version()); "
        "import celery, redis, torch; print(torch.__version__)"
    )
    result = subprocess.run([sys.executable, "-c", code], cwd=cwd, env=env, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    module_file, version, torch_version = result.stdout.split()
    assert Path(module_file).parent == Path(sysconfig.get_paths()["stdlib"])
    assert version == ".".join(map(str, sys.version_info[:3]))
    assert torch_version.startswith("2.13.0")


def test_platform_in_this_process_is_the_stdlib_one():
    import platform

    assert Path(platform.__file__).parent == Path(sysconfig.get_paths()["stdlib"])
    assert platform.system()  # a real function, not a namespace package


@pytest.mark.parametrize("root", SOURCE_ROOTS, ids=["repo-root", "platform"])
def test_no_top_level_name_collides(root):
    # `platform/` itself is the one deliberate exception: with no __init__.py it is
    # at most a namespace portion, which always loses to the stdlib module (tested above).
    ours = importable_names(root) - ({"platform"} if root == REPO_ROOT else set())
    assert ours, "expected some importable names"
    stdlib_clashes = ours & set(sys.stdlib_module_names)
    assert not stdlib_clashes, f"these shadow standard-library modules: {sorted(stdlib_clashes)}"
    dist_clashes = ours & installed_top_level_names()
    assert not dist_clashes, f"these shadow installed distributions: {sorted(dist_clashes)}"


def test_guard_would_catch_a_collision(tmp_path):
    """The guard itself can fail: a folder with `queue.py` and `stripe/` is caught."""
    (tmp_path / "queue.py").write_text("")
    (tmp_path / "celery").mkdir()
    (tmp_path / "celery" / "x.py").write_text("")
    names = importable_names(tmp_path)
    assert "queue" in names & set(sys.stdlib_module_names)
    assert "celery" in names & installed_top_level_names()


def _names(path: Path) -> set[str]:
    import re

    names = set()
    for line in path.read_text().splitlines():
        line = line.split("#")[0].strip()
        if line and not line.startswith("-"):
            names.add(re.split(r"[\[=<>!~ ]", line, maxsplit=1)[0].lower().replace("_", "-"))
    return names


def test_every_direct_dependency_is_pinned():
    """requirements.in (what the code imports) and the pinned files cannot drift."""
    pinned = _names(REPO_ROOT / "requirements.txt") | _names(REPO_ROOT / "requirements-test.txt")
    wanted = _names(REPO_ROOT / "requirements.in") | _names(REPO_ROOT / "requirements-test.in")
    assert wanted - pinned == set(), f"add to the pins: {sorted(wanted - pinned)}"
    assert all("==" in line for line in (REPO_ROOT / "requirements.txt").read_text().splitlines()
               if line.strip() and not line.startswith("#"))
    assert "torch==2.13.0" in (REPO_ROOT / "requirements.txt").read_text().splitlines()
