"""The Node peers of the suite (conformance suite, MCP Inspector CLI), installed by the README's test
command with ``npm ci --prefix tests/node``."""

from __future__ import annotations

import os
from pathlib import Path

NODE_DIR = Path(__file__).resolve().parent / "node"
BIN = NODE_DIR / "node_modules" / ".bin"
#: The conformance suite 0.2.0-alpha.12 (npm alias ``conformance-next``), run by path with ``node``: the
#: ``conformance`` bin stays 0.1.16, since both packages declare it and npm links the first.
CONFORMANCE_NEXT = NODE_DIR / "node_modules" / "conformance-next" / "dist" / "index.js"


def node_env(tmp: Path) -> dict[str, str]:
    """An environment whose PATH starts with the pinned Node 22 and the peers' binaries."""
    missing = [name for name in ("node", "conformance", "mcp-inspector") if not (BIN / name).exists()]
    if missing:
        raise RuntimeError(f"missing Node peers {missing}: run `npm ci --prefix tests/node` (the README's test command does)")
    return {
        **os.environ,
        "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}",
        "MCP_CATALOG_PATH": str(tmp / "inspector-catalog.json"),
        "NO_COLOR": "1",
    }
