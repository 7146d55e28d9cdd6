"""The public surface: what `import pktflow` promises, documented, and linted."""

from __future__ import annotations

import inspect
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

import pktflow
import pktflow.abc
import pktflow.backends.jit

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize("module", [pktflow, pktflow.abc, pktflow.backends.jit])
def test_every_export_exists_and_is_documented(module: object) -> None:
    exported = module.__all__  # type: ignore[attr-defined]
    assert len(exported) == len(set(exported)), "duplicates in __all__"
    for name in exported:
        obj = getattr(module, name)
        if inspect.isclass(obj) or inspect.isfunction(obj) or hasattr(obj, "py_func"):
            doc = inspect.getdoc(obj)
            assert doc, f"{module.__name__}.{name} has no docstring"  # type: ignore[attr-defined]


def test_public_classes_document_their_methods() -> None:
    for name in pktflow.__all__:
        cls = getattr(pktflow, name)
        if not inspect.isclass(cls) or issubclass(cls, BaseException):
            continue
        for attr, member in vars(cls).items():
            if attr.startswith("_") or not inspect.isfunction(member):
                continue
            assert inspect.getdoc(member), f"pktflow.{name}.{attr} has no docstring"


def test_errors_share_one_root_and_the_builtins_users_expect() -> None:
    assert issubclass(pktflow.NotFoundError, LookupError)
    assert issubclass(pktflow.ExistsError, FileExistsError)
    assert issubclass(pktflow.ConfigError, ValueError)
    assert issubclass(pktflow.PktflowValueError, ValueError)
    assert issubclass(pktflow.PktflowTypeError, TypeError)
    for name in pktflow.__all__:
        obj = getattr(pktflow, name)
        if inspect.isclass(obj) and issubclass(obj, Exception):
            assert issubclass(obj, pktflow.PktflowError)


def test_the_folder_names_are_not_importable() -> None:
    code = (
        "import importlib.util, sys; sys.exit(any(importlib.util.find_spec(m)"
        " for m in ('framework', 'backends', 'pipelines')))"
    )
    assert subprocess.run([sys.executable, "-c", code], cwd="/", check=False).returncode == 0


def test_builtin_backends_are_entry_points() -> None:
    from importlib.metadata import entry_points

    names = {ep.name for ep in entry_points(group="pktflow.backends")}
    assert {"pure", "numba", "hugepage"} <= names


RUFF = shutil.which("ruff", path=str(Path(sys.executable).parent)) or shutil.which("ruff")


@pytest.mark.skipif(RUFF is None, reason="ruff is not installed (pip install -e '.[dev]')")
@pytest.mark.parametrize("command", [["check"], ["format", "--check"]])
def test_ruff(command: list[str]) -> None:
    # CI enforces the lint and format settings in pyproject.toml.
    assert RUFF is not None
    result = subprocess.run(
        [RUFF, *command, "framework", "backends", "pipelines", "tests"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
