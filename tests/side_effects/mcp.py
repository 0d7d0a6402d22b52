"""``record_side_effect``: appends its label to a file in ``MCP_TEST_SIDE_EFFECT_DIR``; ``read_side_effects``
(read-only, so its audit row is written once, after it runs) reads that file back.

The file is outside the database on purpose: while the database is down, a test can still tell whether
the tool ran.
"""

from __future__ import annotations

import os
from pathlib import Path

from mcp_app import tool

#: The file, in ``MCP_TEST_SIDE_EFFECT_DIR``, that every call appends one line to.
EFFECTS_FILE = "effects.log"


@tool()
def record_side_effect(label: str) -> str:
    """Append ``label`` to the side-effect file (one line per call) and say so."""
    path = Path(os.environ["MCP_TEST_SIDE_EFFECT_DIR"]) / EFFECTS_FILE
    with path.open("a", encoding="utf-8") as effects:
        effects.write(label + "\n")
    return f"recorded {label}"


@tool(annotations={"readOnlyHint": True})
def read_side_effects() -> str:
    """The labels recorded so far, one per line (reads the file only)."""
    path = Path(os.environ["MCP_TEST_SIDE_EFFECT_DIR"]) / EFFECTS_FILE
    return path.read_text(encoding="utf-8") if path.exists() else ""
