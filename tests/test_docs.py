"""The docs site builds without a warning, and its examples run as written.

Every fenced ```python block in docs/ is a complete example and runs in a
fresh interpreter (in a temporary folder, so what it writes goes there),
unless the line just before it is ``<!-- fragment -->``: a piece of a larger
program (a stage class shown alone, a signature), which is not run.
"""

from __future__ import annotations

import importlib.util
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).parent.parent
DOCS = ROOT / "docs"
FRAGMENT = "<!-- fragment -->"
_BLOCK = re.compile(r"^```python\n(.*?)^```", re.S | re.M)


def _examples() -> list[tuple[str, str]]:
    found = []
    for page in sorted(DOCS.rglob("*.md")):
        text = page.read_text()
        for match in _BLOCK.finditer(text):
            before = text[: match.start()].rstrip("\n").rsplit("\n", 1)[-1]
            if before.strip() == FRAGMENT:
                continue
            line = text.count("\n", 0, match.start()) + 1
            found.append((f"{page.relative_to(DOCS)}:{line}", match.group(1)))
    return found


EXAMPLES = _examples()


def test_the_docs_have_examples() -> None:
    assert len(EXAMPLES) >= 5, [where for where, _ in EXAMPLES]


@pytest.mark.parametrize("code", [code for _, code in EXAMPLES], ids=[w for w, _ in EXAMPLES])
def test_example_runs(code: str, tmp_path: Path) -> None:
    script = tmp_path / "example.py"
    script.write_text(code)
    done = subprocess.run(
        [sys.executable, str(script)],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=180,
        env={**os.environ, "PKTFLOW_REPO": str(ROOT)},
    )
    assert done.returncode == 0, done.stdout + done.stderr


def _missing_docs_tools() -> str | None:
    for module in ("mkdocs", "material", "mkdocstrings", "mkdocstrings_handlers.python"):
        if importlib.util.find_spec(module) is None:
            return f"{module} is not installed (pip install -e '.[docs]')"
    return None


@pytest.mark.skipif(_missing_docs_tools() is not None, reason=str(_missing_docs_tools()))
def test_the_site_builds_strictly(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(tmp_path)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "NO_MKDOCS_2_WARNING": "1"},
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "WARNING" not in done.stderr, done.stderr
    html = (tmp_path / "reference" / "yaml" / "index.html").read_text()
    assert "yield_every" in html and "cache_size" in html  # the generated reference is there
    for page in tmp_path.rglob("*.html"):  # no page links to or loads from another site
        outside = re.findall(r"""(?:href|src)=["']?(https?:|//)""", page.read_text())
        assert not outside, f"{page.relative_to(tmp_path)} points outside the site"


def _generator() -> object:
    spec = importlib.util.spec_from_file_location("docs_generate", DOCS / "_hooks" / "generate.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_every_yaml_key_has_a_meaning() -> None:
    from pktflow import _spec

    generate = _generator()
    for cls in (
        _spec.RuntimeSpec,
        _spec.MempoolSpec,
        _spec._StageKeys,
        _spec.EdgeSpec,
        _spec.ClusterSpec,
    ):
        for key, _type, _default, meaning in generate.yaml_fields(cls):  # type: ignore[attr-defined]
            assert meaning, f"{cls.__name__}.{key} has no msgspec.Meta(description=...)"


def test_every_builtin_stage_is_in_the_reference_with_its_options() -> None:
    import pktflow
    from pktflow import _stage_types

    generate = _generator()
    text = generate.builtin_stages()  # type: ignore[attr-defined]
    for name in _stage_types._BUILTIN:
        assert f"### `{name}`" in text
        for param in generate._options(pktflow.stage_type(name)):  # type: ignore[attr-defined]
            assert f"| `{param.name}` |" in text, f"{name}: option {param.name!r} is missing"


def test_nothing_points_outside_the_repository() -> None:
    pages = [*DOCS.rglob("*.md"), ROOT / "README.md", ROOT / "mkdocs.yml"]
    for page in pages:
        text = page.read_text()
        assert not re.search(r"https?://", text), f"{page}: a link outside the repository"
        assert "DESIGN.md" not in text, f"{page}: names a document users do not have"
