"""pktflow's stage library and example pipelines.

Built-in stage types (YAML ``type:``): ``generator`` (source), ``parse``,
``counter`` and ``drop`` (sinks). Example pipelines are in ``examples/``.

Usage: ``pktflow run pipelines/examples/quickstart.yaml``
"""

from pathlib import Path

EXAMPLES = Path(__file__).parent / "examples"

__all__ = ["EXAMPLES"]
