"""Shared test setup: detailed assertion messages inside the public test suites."""

from __future__ import annotations

import pytest

# The conformance suites live in the package (third parties import them), so
# pytest would not rewrite their asserts unless asked before they are imported.
pytest.register_assert_rewrite("pktflow.testing")
