"""`pktflow ...` command line (placeholder until the CLI lands)."""

from __future__ import annotations


def main() -> None:
    raise SystemExit("pktflow CLI: not built yet")
