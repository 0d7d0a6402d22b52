"""A bare ASGI application: reads the request body and answers ``{}``. The ceiling of a server (daphne,
uvicorn) on this machine: no framework, no routing, no work. Serve it as ``tests.benchmarks.bare_asgi:application``."""

from __future__ import annotations

from typing import Any

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
