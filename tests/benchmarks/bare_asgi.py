"""A bare ASGI application: reads the request body and answers ``{}``. The ceiling of a server (daphne,
uvicorn) on this machine: no framework, no routing, no work. Serve it as ``tests.benchmarks.bare_asgi:application``.

With ``BENCH_DAPHNE_SKIP_FORM_PARSING=1`` in its environment it makes daphne skip Twisted's form parsing, as
this project's routes do (``mcp_app.transports.daphne``, which imports nothing of Django): the ceiling of
daphne as this project runs it.
"""

from __future__ import annotations

import os
from typing import Any

if os.environ.get("BENCH_DAPHNE_SKIP_FORM_PARSING") == "1":
    from mcp_app.transports.daphne import skip_form_parsing

    skip_form_parsing()

HEADERS = [(b"content-type", b"application/json"), (b"content-length", b"2")]


async def application(scope: dict[str, Any], receive: Any, send: Any) -> None:
    if scope["type"] == "lifespan":
        while (await receive())["type"] != "lifespan.shutdown":
            await send({"type": "lifespan.startup.complete"})
        await send({"type": "lifespan.shutdown.complete"})
        return
    more = True
    while more:  # the whole body, as an MCP endpoint must read it
        message = await receive()
        more = message.get("more_body", False)
    await send({"type": "http.response.start", "status": 200, "headers": HEADERS})
    await send({"type": "http.response.body", "body": b"{}"})
