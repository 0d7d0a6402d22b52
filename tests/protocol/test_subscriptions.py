"""``subscriptions/listen`` in the protocol layer (MCP 2026-07-28), in memory, without HTTP or Django: the
filter, the acknowledged subset, the tagging, the final result, cancellation, and the method being modern only.

The source here is a queue; the worker-side source (the fan-out over the channel layer) is tested live in
tests/transports/test_listen.py.
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from mcp_app.protocol import jsonrpc
from mcp_app.protocol.context import MemorySession, PendingClientRequests, RequestContext
from mcp_app.protocol.dispatcher import Dispatcher
from mcp_app.protocol.envelope import META_SERVER_INFO, Envelope, Headers
from mcp_app.protocol.errors import InvalidParams
from mcp_app.protocol.subscriptions import (
    MAX_RESOURCE_SUBSCRIPTIONS,
    SUBSCRIPTION_ID,
    SubscriptionFilter,
    register,
    resource_updated,
    tag,
)
from mcp_app.protocol.versions import Era
from tests.protocol.test_modern_dispatch import SERVER_INFO, make_dispatcher
from tests.wire import assert_valid

V = "2026-07-28"
TOOLS = jsonrpc.notification("notifications/tools/list_changed")
PROMPTS = jsonrpc.notification("notifications/prompts/list_changed")
RESOURCES = jsonrpc.notification("notifications/resources/list_changed")


class QueueSource:
    """A NotificationSource fed by the test: ``None`` in the queue ends the stream (gracefully)."""

    def __init__(self) -> None:
        self.queue: asyncio.Queue[dict[str, Any] | None] = asyncio.Queue()
        self.opened: list[SubscriptionFilter] = []
        self.closed = 0

    async def listen(self, subscription: SubscriptionFilter, ctx: RequestContext) -> QueueSource:
        self.opened.append(subscription)
        return self

    def __aiter__(self) -> QueueSource:
        return self

    async def __anext__(self) -> dict[str, Any]:
        item = await self.queue.get()
        if item is None:
            raise StopAsyncIteration
        return item

    async def aclose(self) -> None:
        self.closed += 1


@pytest.fixture
def source() -> QueueSource:
    return QueueSource()


@pytest.fixture
def dispatcher(source: QueueSource) -> Dispatcher:
    dispatcher = make_dispatcher()
    register(dispatcher, source)
    return dispatcher


def start(
    dispatcher: Dispatcher, notifications: Any, *, request_id: int | str = 7, session: Any = None
) -> tuple[asyncio.Task[dict[str, Any] | None], list[dict[str, Any]]]:
    """Run a listen request in a task; return it and the list of what it sends."""
    sent: list[dict[str, Any]] = []

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    envelope = session or Envelope(V, {}, {"name": "client", "version": "0"}, None, Headers())
    ctx = RequestContext(session=envelope, request_id=request_id, meta=None, send=send, pending=PendingClientRequests())
    params: dict[str, Any] = {} if notifications is ... else {"notifications": notifications}
    request = jsonrpc.Request(request_id, "subscriptions/listen", params)
    return asyncio.ensure_future(dispatcher.handle_request(request, ctx)), sent


async def settle() -> None:
    for _ in range(20):
        await asyncio.sleep(0)


async def until(condition: Any) -> None:
    async def wait() -> None:
        while not condition():
            await asyncio.sleep(0.01)

    await asyncio.wait_for(wait(), 2)


# -- the filter -------------------------------------------------------------------------------------------------
def test_filter_parses_flags_and_uris_and_ignores_unknown_members() -> None:
    parsed = SubscriptionFilter.parse(
        {
            "notifications": {
                "toolsListChanged": True,
                "promptsListChanged": False,
                "resourceSubscriptions": ["a://1", "a://1", "b://2"],
                "future": 1,
            }
        }
    )
    assert parsed.list_changed == {"notifications/tools/list_changed"}
    assert parsed.uri_order == ("a://1", "b://2") and parsed.resource_uris == {"a://1", "b://2"}
    assert parsed.to_wire() == {"toolsListChanged": True, "resourceSubscriptions": ["a://1", "b://2"]}
    assert SubscriptionFilter.parse({"notifications": {}}).empty


@pytest.mark.parametrize(
    "params",
    [
        {},
        {"notifications": None},
        {"notifications": []},
        {"notifications": {"toolsListChanged": "yes"}},
        {"notifications": {"resourceSubscriptions": "a://1"}},
        {"notifications": {"resourceSubscriptions": ["a://1", 3]}},
        {"notifications": {"resourceSubscriptions": [""]}},
        {"notifications": {"resourceSubscriptions": [f"a://{i}" for i in range(MAX_RESOURCE_SUBSCRIPTIONS + 1)]}},
    ],
)
def test_malformed_filters_are_invalid_params(params: dict[str, Any]) -> None:
    with pytest.raises(InvalidParams):
        SubscriptionFilter.parse(params)


def test_honoured_subset_follows_the_capabilities_and_readability() -> None:
    requested = SubscriptionFilter.parse(
        {"notifications": {"toolsListChanged": True, "promptsListChanged": True, "resourceSubscriptions": ["a://1", "b://2"]}}
    )
    caps = {"tools": {"listChanged": True}, "prompts": {}, "resources": {"subscribe": True}}
    honoured = requested.honoured(caps, lambda uri: uri == "b://2")
    assert honoured.to_wire() == {"toolsListChanged": True, "resourceSubscriptions": ["b://2"]}
    assert requested.honoured({"resources": {"listChanged": True}}).to_wire() == {}


def test_admits_only_the_opted_in_notifications() -> None:
    chosen = SubscriptionFilter.parse({"notifications": {"toolsListChanged": True, "resourceSubscriptions": ["a://1"]}})
    assert chosen.admits(TOOLS)
    assert not chosen.admits(PROMPTS) and not chosen.admits(RESOURCES)
    assert chosen.admits(resource_updated("a://1")) and not chosen.admits(resource_updated("a://2"))
    # Request-scoped notifications and anything with an id never go on a listen stream.
    assert not chosen.admits(jsonrpc.notification("notifications/progress", {"progressToken": 1, "progress": 1}))
    assert not chosen.admits(jsonrpc.notification("notifications/message", {"level": "info", "data": "x"}))
    assert not chosen.admits(jsonrpc.request(1, "notifications/tools/list_changed"))
    assert not chosen.admits({"jsonrpc": "2.0", "method": "notifications/resources/updated"})


def test_tag_copies_and_keeps_other_meta() -> None:
    original = jsonrpc.notification("notifications/resources/updated", {"uri": "a://1", "_meta": {"x": 1}})
    tagged = tag(original, "sub-1")
    assert tagged["params"] == {"uri": "a://1", "_meta": {"x": 1, SUBSCRIPTION_ID: "sub-1"}}
    assert original["params"]["_meta"] == {"x": 1}  # the shared copy is untouched
    assert tag(TOOLS, 3)["params"] == {"_meta": {SUBSCRIPTION_ID: 3}} and "params" not in TOOLS


# -- the method ------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("request_id", [7, "listen-7"])
async def test_ack_first_then_tagged_admitted_notifications_then_final_result(
    dispatcher: Dispatcher, source: QueueSource, request_id: int | str
) -> None:
    task, sent = start(dispatcher, {"toolsListChanged": True, "resourceSubscriptions": ["demo://readme"]}, request_id=request_id)
    await until(lambda: sent)
    assert len(sent) == 1
    ack = sent[0]
    assert_valid(ack, "SubscriptionsAcknowledgedNotification", V)
    assert ack["method"] == "notifications/subscriptions/acknowledged"
    assert ack["params"]["_meta"][SUBSCRIPTION_ID] == request_id  # the same type: a number stays a number
    assert ack["params"]["notifications"] == {"toolsListChanged": True, "resourceSubscriptions": ["demo://readme"]}
    for message in (PROMPTS, TOOLS, resource_updated("demo://other"), resource_updated("demo://readme"), RESOURCES):
        source.queue.put_nowait(message)
    await until(lambda: source.queue.empty() and len(sent) >= 3)
    await settle()  # time for anything that should not come
    assert [m["method"] for m in sent[1:]] == ["notifications/tools/list_changed", "notifications/resources/updated"]
    for message in sent[1:]:
        assert message["params"]["_meta"][SUBSCRIPTION_ID] == request_id
        assert_valid(
            message,
            {"notifications/tools/list_changed": "ToolListChangedNotification"}.get(
                message["method"], "ResourceUpdatedNotification"
            ),
            V,
        )
    assert not task.done()
    source.queue.put_nowait(None)  # the server ends the stream: shutdown, credential withdrawn, overflow
    answer = await asyncio.wait_for(task, 2)
    assert answer is not None and answer["id"] == request_id
    assert_valid(answer["result"], "SubscriptionsListenResult", V)
    assert answer["result"]["resultType"] == "complete"
    assert answer["result"]["_meta"][SUBSCRIPTION_ID] == request_id
    assert answer["result"]["_meta"][META_SERVER_INFO] == SERVER_INFO
    assert "ttlMs" not in answer["result"]  # not a cacheable result
    assert source.closed == 1


async def test_closing_the_stream_cancels_the_request_and_releases_the_source(
    dispatcher: Dispatcher, source: QueueSource
) -> None:
    task, sent = start(dispatcher, {"promptsListChanged": True})
    await until(lambda: sent)
    assert len(sent) == 1 and source.closed == 0
    task.cancel()  # what the transport does when the client closes the response stream
    with pytest.raises(asyncio.CancelledError):
        await task
    assert source.closed == 1
    source.queue.put_nowait(PROMPTS)
    await settle()
    assert len(sent) == 1  # nothing more is sent for it


async def test_unknown_or_unreadable_uris_are_left_out_of_the_ack(dispatcher: Dispatcher, source: QueueSource) -> None:
    task, sent = start(dispatcher, {"resourceSubscriptions": ["demo://nope", "demo://readme", "demo://items/10"]})
    await until(lambda: sent)
    assert sent[0]["params"]["notifications"] == {"resourceSubscriptions": ["demo://readme", "demo://items/10"]}
    assert source.opened[0].resource_uris == {"demo://readme", "demo://items/10"}
    source.queue.put_nowait(resource_updated("demo://nope"))
    source.queue.put_nowait(None)
    await asyncio.wait_for(task, 2)
    assert len(sent) == 1


async def test_a_bad_filter_is_answered_before_anything_is_opened(dispatcher: Dispatcher, source: QueueSource) -> None:
    for notifications in (..., {"toolsListChanged": 1}):
        task, sent = start(dispatcher, notifications)
        answer = await asyncio.wait_for(task, 2)
        assert answer is not None and answer["error"]["code"] == -32602
        assert sent == []
    assert source.opened == []


async def test_listen_is_a_modern_method_only(dispatcher: Dispatcher) -> None:
    assert "subscriptions/listen" in dispatcher.methods_for(Era.MODERN)
    assert "subscriptions/listen" not in dispatcher.methods_for(Era.HANDSHAKE)
    task, sent = start(dispatcher, {"toolsListChanged": True}, session=MemorySession())
    answer = await asyncio.wait_for(task, 2)
    assert answer is not None and answer["error"]["code"] == -32601 and sent == []
