"""``python -m pktflow ...``: the same command line as the ``pktflow`` script.

Usage: ``python -m pktflow info``
"""

from __future__ import annotations

from .cli import main

if __name__ == "__main__":
    main()
