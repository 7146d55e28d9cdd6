"""The README's examples run as written."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

README = Path(__file__).parent.parent / "README.md"


def _block_after(marker: str) -> str:
    text = README.read_text()
    match = re.search(re.escape(marker) + r".*?\n```python\n(.*?)```", text, re.S)
    assert match, f"no python block after {marker!r} in the README"
    return match.group(1)


def test_the_embedding_example_runs_beside_a_server(tmp_path: Path):
    code = _block_after("<!-- embedding example")
    # Port 0: the example's server must not collide with anything on this machine.
    script = tmp_path / "embed.py"
    script.write_text(code.replace('"127.0.0.1", 8080', '"127.0.0.1", 0'))
    done = subprocess.run(
        [sys.executable, str(script)], capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    lines = done.stdout.strip().splitlines()
    assert lines[-1] == "counted: 200000"
    assert all(line.startswith("so far:") for line in lines[:-1])
