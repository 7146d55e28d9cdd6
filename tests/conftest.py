"""Shared test setup: a private lcore table, detailed assertions in the public suites."""

from __future__ import annotations

import os
import shutil
import tempfile

import pytest

# This run's own lcore table (before anything imports pktflow), so concurrent
# runs on one machine, and pktflow programs running beside them, never take
# each other's ids. Spawned children inherit the environment.
_LCORE_DIR = tempfile.mkdtemp(prefix="pktflow-tests-")
os.environ["PKTFLOW_LCORE_TABLE"] = os.path.join(_LCORE_DIR, "lcores")


def pytest_unconfigure(config: pytest.Config) -> None:
    shutil.rmtree(_LCORE_DIR, ignore_errors=True)


# The conformance suites live in the package (third parties import them), so
# pytest would not rewrite their asserts unless asked before they are imported.
pytest.register_assert_rewrite("pktflow.testing")
