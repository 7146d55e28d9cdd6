"""``mypy --strict`` over the package laid out as installed: clean, or the test fails.

mypy follows neither setuptools' package-dir mapping nor the editable
install's import hook, so this lays the folders out as ``pip install``
does, with symlinks under build/typecheck (mypy_path in pyproject.toml):
``engine/pktflow`` is framework/ itself (new modules are seen at once), and
``parts/pktflow`` adds backends/ and pipelines/ as its subpackages (its
``__init__.py`` link tells mypy they belong to the same package).
"""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
TREE = ROOT / "build" / "typecheck"
LINKS = {
    "engine/pktflow": "framework",
    "parts/pktflow/__init__.py": "framework/__init__.py",
    "parts/pktflow/backends": "backends",
    "parts/pktflow/pipelines": "pipelines",
}


def lay_out() -> None:
    """Create the symlinks (relative, so the checkout may move); idempotent."""
    for link, target in LINKS.items():
        path = TREE / link
        path.parent.mkdir(parents=True, exist_ok=True)
        relative = os.path.relpath(ROOT / target, path.parent)
        if path.is_symlink() and os.readlink(path) == relative:
            continue
        path.unlink(missing_ok=True)
        try:
            path.symlink_to(relative)
        except FileExistsError:
            pass  # a concurrent run made it


def repository_paths(report: str) -> str:
    """mypy's report with the linked paths turned back into the repository's."""
    for link, target in LINKS.items():
        report = report.replace(f"build/typecheck/{link}", target)
    return report


def test_the_package_ships_its_type_marker() -> None:
    assert (ROOT / "framework" / "py.typed").is_file()


@pytest.mark.skipif(
    importlib.util.find_spec("mypy") is None,
    reason="mypy is not installed (pip install -e '.[dev]')",
)
def test_mypy_strict_is_clean() -> None:
    lay_out()
    result = subprocess.run(
        [sys.executable, "-m", "mypy"],  # files, flags and overrides: [tool.mypy]
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, repository_paths(result.stdout + result.stderr)
