"""The protocol layer's side of the conversation, in memory: ``initialize`` answered from the method table,
what a POST carries besides requests (notifications, cancellation, the client's answers) routed by
``Dispatcher.take``, the one context builder, and what a transport may ask about a message."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from mcp_app import Context
from mcp_app.protocol import jsonrpc, messages
from mcp_app.protocol.context import MemorySession
from mcp_app.protocol.dispatcher import Dispatcher
from mcp_app.protocol.pagination import CursorCodec
from mcp_app.providers.code import Registry
from tests.wire import assert_valid


class RecordingRelay:
    """A relay that keeps what would have gone to the other workers."""

    def __init__(self) -> None:
        self.responses: list[tuple[str, jsonrpc.Response]] = []
        self.cancels: list[tuple[str, str | int]] = []

    async def response(self, session_id: str, response: jsonrpc.Response) -> None:
        self.responses.append((session_id, response))

    async def cancel(self, session_id: str, request_id: str | int) -> None:
        self.cancels.append((session_id, request_id))


def make_dispatcher(relay: RecordingRelay | None = None) -> Dispatcher:
    registry = Registry()

    @registry.tool()
    async def slow(ctx: Context) -> str:
        """Waits until cancelled."""
        await asyncio.sleep(30)
        return "done"

    return Dispatcher(
        registry,
        server_info={"name": "test", "version": "1"},
        cursor_codec=CursorCodec(b"x" * 32),
        client_request_timeout=7.0,
        relay=relay,
    )


async def _ignore(message: dict[str, Any]) -> None:
    return None


async def initialize(dispatcher: Dispatcher, session: MemorySession, params: dict[str, Any]) -> dict[str, Any]:
    request = jsonrpc.Request(1, "initialize", params)
    answer = await dispatcher.handle_request(request, dispatcher.context(session, request.id, send=_ignore))
    assert answer is not None
    return answer


@pytest.mark.parametrize("version", ["2024-11-05", "2025-03-26", "2025-06-18", "2025-11-25"])
async def test_initialize_is_answered_by_the_dispatcher_and_recorded_on_the_session(version: str) -> None:
    session = MemorySession(protocol_version="2024-11-05")
    info = {"name": "client", "version": "2"}
    answer = await initialize(
        make_dispatcher(), session, {"protocolVersion": version, "clientInfo": info, "capabilities": {"sampling": {}}}
    )
    assert answer["id"] == 1 and answer["result"]["protocolVersion"] == version
    assert_valid(answer["result"], "InitializeResult", version)
    assert (session.protocol_version, session.client_info, session.client_capabilities) == (version, info, {"sampling": {}})


async def test_initialize_negotiates_an_unknown_version_to_the_latest() -> None:
    session = MemorySession()
    answer = await initialize(make_dispatcher(), session, {"protocolVersion": "1999-01-01"})
    assert answer["result"]["protocolVersion"] == session.protocol_version == "2025-11-25"


async def test_invalid_initialize_params_are_an_error_and_record_nothing() -> None:
    session = MemorySession(protocol_version="2024-11-05")
    answer = await initialize(make_dispatcher(), session, {"clientInfo": {}})
    assert answer["id"] == 1 and answer["error"]["code"] == -32602 and "protocolVersion" in answer["error"]["message"]
    assert session.protocol_version == "2024-11-05"


async def test_context_is_built_with_the_dispatchers_pending_requests_and_cursors() -> None:
    dispatcher = make_dispatcher()
    session = MemorySession()
    sent: list[dict[str, Any]] = []

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    ctx = dispatcher.context(session, 5, send=send, meta={"progressToken": "t"}, extra={"via": "test"})
    assert ctx.session is session and ctx.request_id == 5 and ctx.progress_token == "t"
    assert ctx.cursors is dispatcher.cursors and ctx.extra == {"via": "test"}
    asked = asyncio.ensure_future(ctx.send_request("roots/list"))
    while not sent:
        await asyncio.sleep(0)
    # The client's answer reaches the handler through the dispatcher's pending requests.
    assert dispatcher.pending.resolve(session.id, jsonrpc.Response(sent[0]["id"], {"roots": []}))
    assert await asyncio.wait_for(asked, 2) == {"roots": []}


async def test_take_returns_requests_and_errors_and_routes_the_rest() -> None:
    relay = RecordingRelay()
    dispatcher = make_dispatcher(relay)
    session = MemorySession()
    request_id, future = dispatcher.pending.create(session.id)
    items = [
        {"jsonrpc": "2.0", "id": 1, "method": "ping"},
        {"jsonrpc": "2.0", "id": request_id, "result": {"role": "assistant"}},  # awaited here
        {"jsonrpc": "2.0", "id": "srv-elsewhere-1", "result": {}},  # awaited on another worker
        {"jsonrpc": "2.0", "method": "notifications/cancelled", "params": {"requestId": 99}},  # runs elsewhere
        {"jsonrpc": "2.0", "method": "notifications/initialized"},
        {"jsonrpc": "1.0", "id": 3, "method": "ping"},
    ]
    requests, errors = await dispatcher.take(session, items)
    assert [r.id for r in requests] == [1]
    assert len(errors) == 1 and errors[0]["id"] == 3 and errors[0]["error"]["code"] == -32600
    assert future.result() == {"role": "assistant"}
    assert [(s, r.id) for s, r in relay.responses] == [(session.id, "srv-elsewhere-1")]
    assert relay.cancels == [(session.id, 99)]


async def test_a_cancellation_for_a_request_running_here_is_not_relayed() -> None:
    relay = RecordingRelay()
    dispatcher = make_dispatcher(relay)
    session = MemorySession()
    request = jsonrpc.Request(9, "tools/call", {"name": "slow"})
    task = asyncio.ensure_future(dispatcher.handle_request(request, dispatcher.context(session, 9, send=_ignore)))
    await asyncio.sleep(0.05)
    await dispatcher.take(session, [{"jsonrpc": "2.0", "method": "notifications/cancelled", "params": {"requestId": 9}}])
    assert await asyncio.wait_for(task, 2) is None  # cancelled requests are not answered
    assert relay.cancels == []


async def test_without_a_relay_nothing_is_forwarded() -> None:
    dispatcher = make_dispatcher()
    session = MemorySession()
    requests, errors = await dispatcher.take(
        session,
        [
            {"jsonrpc": "2.0", "id": "srv-elsewhere-1", "result": {}},
            {"jsonrpc": "2.0", "method": "notifications/cancelled", "params": {"requestId": 1}},
        ],
    )
    assert requests == [] and errors == []


def test_what_a_transport_may_ask_about_a_message() -> None:
    opening = {"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {}}
    assert messages.opens_session(opening) and not messages.opens_session({"jsonrpc": "2.0", "id": 1, "method": "ping"})
    assert not messages.opens_session(["initialize"])
    assert messages.opening_request(opening) == jsonrpc.Request(1, "initialize", {})
    with pytest.raises(jsonrpc.InvalidMessage, match="needs an id"):
        messages.opening_request({"jsonrpc": "2.0", "method": "initialize"})
    assert messages.is_list_changed({"jsonrpc": "2.0", "method": "notifications/tools/list_changed"})
    assert not messages.is_list_changed({"jsonrpc": "2.0", "id": 1, "method": "notifications/tools/list_changed"})
    assert not messages.is_list_changed({"jsonrpc": "2.0", "method": "notifications/progress"})
    answer, ask = jsonrpc.response(1, {}), jsonrpc.request("srv-1", "roots/list")
    assert messages.is_answer(answer) and not messages.is_answer(ask)
    assert messages.is_server_request(ask) and not messages.is_server_request(answer)
    assert not messages.is_server_request(jsonrpc.notification("notifications/progress"))
