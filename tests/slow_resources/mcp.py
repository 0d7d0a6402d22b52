"""``slow://item/{n}``: each read keeps Django's database thread busy for :data:`READ_SECONDS`.

It stands for a resource whose read is a slow query or CPU-bound serialisation. The time is spent
computing, not sleeping, so the read also holds the GIL the way real work does.
"""

from __future__ import annotations

import hashlib
import time

from mcp_app import resource

#: What one read costs, in seconds of CPU.
READ_SECONDS = 0.04


@resource("slow://item/{n}", name="slow-item", mime_type="text/plain")
def slow_item(n: str) -> str:
    """One item, computed slowly."""
    digest = n.encode()
    deadline = time.perf_counter() + READ_SECONDS
    while time.perf_counter() < deadline:
        digest = hashlib.sha256(digest).digest()
    return f"item {n}: {digest.hex()[:16]}"
