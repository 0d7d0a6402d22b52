"""Multi round-trip requests (MCP 2026-07-28): the requestState codec, the input rounds, and the same tool
code answering in both eras. No Django, no HTTP."""

from __future__ import annotations

import asyncio
import base64
import json
from typing import Any

import pytest

from mcp_app import Context
from mcp_app.protocol import jsonrpc
from mcp_app.protocol.context import MemorySession, RequestContext
from mcp_app.protocol.dispatcher import Dispatcher
from mcp_app.protocol.envelope import Envelope
from mcp_app.protocol.errors import INVALID_PARAMS, InputRequired, InvalidParams
from mcp_app.protocol.pagination import CursorCodec
from mcp_app.protocol.request_state import (
    MAX_STATE_SIZE,
    InputRound,
    RequestStateCodec,
    StateBinding,
    params_digest,
    read_input_responses,
)
from mcp_app.providers.code import Registry
from tests.wire import assert_valid

KEY = b"k" * 32


class Clock:
    def __init__(self, now: float = 1_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def binding(principal: str = "token:1", method: str = "tools/call", **params: Any) -> StateBinding:
    return StateBinding.of(principal, method, params or {"name": "greet", "arguments": {"who": "x"}})


def refused(reason: str) -> Any:
    """Assert an InvalidParams with data.reason == reason."""

    class _Refused:
        def __enter__(self) -> None:
            self.ctx = pytest.raises(InvalidParams)
            self.info = self.ctx.__enter__()

        def __exit__(self, *exc: Any) -> bool:
            handled = self.ctx.__exit__(*exc)
            assert self.info.value.code == INVALID_PARAMS
            assert self.info.value.data == {"reason": reason}
            assert "retry the original request without inputResponses and requestState" in self.info.value.message
            return handled

    return _Refused()


# -- the codec ----------------------------------------------------------------------------------------------
def test_a_sealed_state_opens_to_its_answers() -> None:
    codec = RequestStateCodec(KEY, 600)
    answers = {"user_name": {"action": "accept", "content": {"name": "Ada"}}}
    token = codec.seal(binding(), answers)
    assert isinstance(token, str) and token.count(".") == 1
    assert codec.open(token, binding()) == answers


def test_the_binding_ignores_meta_and_mrtr_members_and_key_order() -> None:
    a = params_digest({"name": "t", "arguments": {"a": 1, "b": 2}, "_meta": {"x": 1}})
    b = params_digest({"arguments": {"b": 2, "a": 1}, "name": "t", "inputResponses": {}, "requestState": "s"})
    assert a == b
    assert a != params_digest({"name": "t", "arguments": {"a": 1, "b": 3}})


@pytest.mark.parametrize("token", [None, 5, "", "abc", "a.b.c", "a.b", "é.é", "x" * (MAX_STATE_SIZE + 1)])
def test_garbage_is_invalid(token: object) -> None:
    with refused("invalid"):
        RequestStateCodec(KEY).open(token, binding())


def test_tampered_and_forged_states_are_invalid() -> None:
    codec = RequestStateCodec(KEY)
    token = codec.seal(binding(), {"a": {"action": "accept"}})
    payload, mac = token.split(".")
    state = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    state["a"] = {"a": {"action": "accept", "content": {"admin": True}}}
    forged = base64.urlsafe_b64encode(json.dumps(state).encode()).rstrip(b"=").decode()
    for bad in (token + "-TAMPERED", f"{forged}.{mac}", f"{payload}.{mac[:-2]}AA", f"{payload}x.{mac}"):
        with refused("invalid"):
            codec.open(bad, binding())
    with refused("invalid"):  # another key (another site, or a rotated SECRET_KEY)
        RequestStateCodec(b"o" * 32).open(token, binding())


def test_another_principals_state_reads_as_invalid_not_as_foreign() -> None:
    codec = RequestStateCodec(KEY)
    token = codec.seal(binding("token:1"), {})
    with refused("invalid"):
        codec.open(token, binding("token:2"))
    # The principal is bound without being shown: the payload does not contain it.
    assert "token:1" not in base64.urlsafe_b64decode(token.split(".")[0] + "==").decode()


def test_expired_states_are_refused_after_the_ttl() -> None:
    clock = Clock()
    codec = RequestStateCodec(KEY, 600, clock=clock)
    token = codec.seal(binding(), {})
    clock.now += 600
    assert codec.open(token, binding()) == {}
    clock.now += 1.5
    with refused("expired"):
        codec.open(token, binding())


def test_a_state_is_refused_on_another_request() -> None:
    codec = RequestStateCodec(KEY)
    token = codec.seal(binding(name="greet", arguments={"who": "x"}), {})
    with refused("mismatch"):
        codec.open(token, binding(name="greet", arguments={"who": "y"}))
    with refused("mismatch"):
        codec.open(token, binding(name="other", arguments={"who": "x"}))
    with refused("mismatch"):
        codec.open(token, binding(method="prompts/get", name="greet", arguments={"who": "x"}))


def test_answers_too_large_for_a_state_are_invalid_params() -> None:
    codec = RequestStateCodec(KEY)
    with pytest.raises(InvalidParams) as info:
        codec.seal(binding(), {"big": {"action": "accept", "content": {"text": "x" * MAX_STATE_SIZE}}})
    assert info.value.data == {"reason": "too_large"}


def test_the_codec_wants_a_real_key_and_ttl() -> None:
    with pytest.raises(ValueError):
        RequestStateCodec(b"short")
    with pytest.raises(ValueError):
        RequestStateCodec(KEY, 0)


# -- inputResponses and rounds ------------------------------------------------------------------------------
def test_input_responses_absent_is_empty() -> None:
    assert read_input_responses({"name": "t"}) == {}
    assert read_input_responses({"inputResponses": {}}) == {}


@pytest.mark.parametrize("value", [None, [], "x", 5, {"user_name": 12345}, {"a": {"action": "accept"}, "b": None}])
def test_malformed_input_responses_are_invalid_params(value: Any) -> None:
    with pytest.raises(InvalidParams):
        read_input_responses({"inputResponses": value})


def test_default_keys_count_per_method_in_call_order() -> None:
    round_ = InputRound()
    keys = [round_.next_key(m) for m in ("elicitation/create", "sampling/createMessage", "elicitation/create", "roots/list")]
    assert keys == ["elicitation-1", "sampling-1", "elicitation-2", "roots-1"]


def test_known_answers_win_and_extra_responses_are_ignored() -> None:
    first = {"action": "accept", "content": {"name": "Ada"}}
    round_ = InputRound(known={"a": first}, responses={"a": {"action": "decline"}, "b": {"action": "cancel"}, "zzz": {"x": 1}})
    assert round_.answer("a", "elicitation/create") == first
    assert round_.answer("b", "elicitation/create") == {"action": "cancel"}
    assert round_.answer("c", "elicitation/create") is None
    assert round_.answers_to_keep() == {"a": first, "b": {"action": "cancel"}}  # "zzz" was never asked for


@pytest.mark.parametrize(
    ("method", "answer"),
    [
        ("elicitation/create", {"content": {}}),
        ("elicitation/create", {"action": "maybe"}),
        ("sampling/createMessage", {"role": "assistant", "content": {"type": "text", "text": "x"}}),
        ("roots/list", {"roots": "file:///"}),
    ],
)
def test_answers_of_the_wrong_kind_are_invalid_params(method: str, answer: dict[str, Any]) -> None:
    with pytest.raises(InvalidParams):
        InputRound(responses={"k": answer}).answer("k", method)


def test_a_key_asked_twice_for_different_inputs_is_a_programming_error() -> None:
    round_ = InputRound()
    round_.ask("k", "roots/list", {})
    round_.ask("k", "roots/list", {})  # the same request again (a retry of the same code): fine
    with pytest.raises(ValueError):
        round_.ask("k", "elicitation/create", {"message": "?", "requestedSchema": {"type": "object", "properties": {}}})


# -- InputRequired ------------------------------------------------------------------------------------------
async def test_input_required_escapes_except_exception_and_gather_collects_every_input() -> None:
    round_ = InputRound()

    async def ask(key: str, method: str) -> dict[str, Any]:
        answer = round_.answer(key, method)
        if answer is None:
            round_.ask(key, method, {})
            raise InputRequired(round_.asked)
        return answer

    async def handler() -> Any:
        try:
            return await asyncio.gather(ask("a", "roots/list"), ask("b", "roots/list"), ask("c", "roots/list"))
        except Exception:  # a tool's own broad handler must not swallow the need for input
            pytest.fail("InputRequired was caught by except Exception")

    try:
        await handler()
    except InputRequired as exc:
        seen = list(exc.input_requests)  # what the dispatcher sees at once, without yielding to the loop
    else:
        pytest.fail("no InputRequired")
    assert seen == ["a", "b", "c"]


# -- the dispatcher: rounds of a modern request, and the same tool in the handshake era ----------------------
V = "2026-07-28"
ALL_CAPS = {"elicitation": {}, "sampling": {}, "roots": {}}
NAME_FORM = {"type": "object", "properties": {"name": {"type": "string"}}, "required": ["name"]}
ACCEPT_ADA = {"action": "accept", "content": {"name": "Ada"}}
RAN: list[str] = []


def make_dispatcher() -> Dispatcher:
    registry = Registry()

    @registry.tool()
    async def greet(ctx: Context, punctuation: str = "!") -> str:
        """Asks a name (default key), then greets."""
        RAN.append("greet")
        answer = await ctx.elicit("Your name?", NAME_FORM)
        return f"Hello, {answer['content']['name']}{punctuation}"

    @registry.tool()
    async def two_steps(ctx: Context) -> str:
        """Two questions, one round each."""
        first = await ctx.elicit("Name?", NAME_FORM)
        second = await ctx.elicit("Again?", NAME_FORM)
        return f"{first['content']['name']}/{second['content']['name']}"

    @registry.tool()
    async def everything(ctx: Context) -> str:
        """Three inputs in one round."""
        name, sampled, roots = await asyncio.gather(
            ctx.elicit("Name?", NAME_FORM, key="who"),
            ctx.sample([{"role": "user", "content": {"type": "text", "text": "hi"}}], max_tokens=5),
            ctx.list_roots(),
        )
        return f"{name['content']['name']} {sampled['content']['text']} {roots['roots'][0]['uri']}"

    @registry.tool()
    async def swallows(ctx: Context) -> str:
        """A broad except around the question must not turn the need for input into an error result."""
        try:
            await ctx.elicit("Name?", NAME_FORM)
        except Exception:
            return "swallowed"
        return "answered"

    @registry.tool()
    async def url_mode(ctx: Context) -> str:
        """URL-mode elicitation needs elicitation.url."""
        await ctx.elicit("Open this", {"type": "object", "properties": {}}, mode="url", url="https://example.com")
        return "done"

    @registry.prompt()
    async def ask_prompt(ctx: Context) -> str:
        """A prompt that asks first."""
        answer = await ctx.elicit("Context?", NAME_FORM, key="context")
        return f"Context: {answer['content']['name']}"

    @registry.resource("test://asks")
    async def asks_resource(ctx: Context) -> str:
        """A resource read that asks first."""
        roots = await ctx.list_roots()
        return roots["roots"][0]["uri"]

    return Dispatcher(registry, server_info={"name": "t", "version": "1"}, cursor_codec=CursorCodec(b"x" * 32))


async def modern(
    dispatcher: Dispatcher,
    method: str,
    params: dict[str, Any],
    *,
    capabilities: dict[str, Any] | None = None,
    principal: str = "token:1",
    sent: list[dict[str, Any]] | None = None,
) -> dict[str, Any]:
    envelope = Envelope(V, ALL_CAPS if capabilities is None else capabilities)

    async def send(message: dict[str, Any]) -> None:
        (sent if sent is not None else []).append(message)

    ctx = dispatcher.context(envelope, 1, send=send, extra={"principal": principal})
    response = await dispatcher.handle_request(jsonrpc.Request(1, method, params), ctx)
    assert response is not None
    return response


def assert_valid_result(method: str, result: dict[str, Any]) -> None:
    definition = {"tools/call": "CallToolResult", "prompts/get": "GetPromptResult", "resources/read": "ReadResourceResult"}
    assert_valid(result, "InputRequiredResult" if result["resultType"] == "input_required" else definition[method], V)


async def test_a_question_ends_the_round_with_input_required_then_the_retry_completes() -> None:
    dispatcher = make_dispatcher()
    params = {"name": "greet", "arguments": {"punctuation": "?"}}
    first = (await modern(dispatcher, "tools/call", params))["result"]
    assert_valid_result("tools/call", first)
    assert first["resultType"] == "input_required"
    assert first["inputRequests"] == {
        "elicitation-1": {"method": "elicitation/create", "params": {"message": "Your name?", "requestedSchema": NAME_FORM}}
    }
    assert "ttlMs" not in first and "cacheScope" not in first
    assert first["_meta"]["io.modelcontextprotocol/serverInfo"] == {"name": "t", "version": "1"}
    retry = {**params, "inputResponses": {"elicitation-1": ACCEPT_ADA}, "requestState": first["requestState"]}
    second = (await modern(dispatcher, "tools/call", retry))["result"]
    assert_valid_result("tools/call", second)
    assert second["resultType"] == "complete"
    assert second["content"] == [{"type": "text", "text": "Hello, Ada?"}]


async def test_answers_without_a_state_are_taken_and_missing_ones_asked_again() -> None:
    dispatcher = make_dispatcher()
    done = await modern(dispatcher, "tools/call", {"name": "greet", "inputResponses": {"elicitation-1": ACCEPT_ADA}})
    assert done["result"]["content"][0]["text"] == "Hello, Ada!"
    again = await modern(dispatcher, "tools/call", {"name": "greet", "inputResponses": {"wrong_key": ACCEPT_ADA}})
    assert again["result"]["resultType"] == "input_required" and list(again["result"]["inputRequests"]) == ["elicitation-1"]


async def test_each_round_asks_the_next_question_and_the_state_carries_the_earlier_answers() -> None:
    dispatcher = make_dispatcher()
    params: dict[str, Any] = {"name": "two_steps", "arguments": {}}
    first = (await modern(dispatcher, "tools/call", params))["result"]
    assert list(first["inputRequests"]) == ["elicitation-1"]
    second = (
        await modern(
            dispatcher,
            "tools/call",
            {**params, "inputResponses": {"elicitation-1": ACCEPT_ADA}, "requestState": first["requestState"]},
        )
    )["result"]
    assert list(second["inputRequests"]) == ["elicitation-2"] and second["requestState"] != first["requestState"]
    bob = {"action": "accept", "content": {"name": "Bob"}}
    # Only the new answer is sent; an attempt to change the first one is ignored (the state's answer wins).
    third = (
        await modern(
            dispatcher,
            "tools/call",
            {**params, "inputResponses": {"elicitation-2": bob, "elicitation-1": bob}, "requestState": second["requestState"]},
        )
    )["result"]
    assert third["content"][0]["text"] == "Ada/Bob"


async def test_gathered_inputs_are_asked_in_one_round() -> None:
    dispatcher = make_dispatcher()
    first = (await modern(dispatcher, "tools/call", {"name": "everything"}))["result"]
    assert_valid_result("tools/call", first)
    assert {key: value["method"] for key, value in first["inputRequests"].items()} == {
        "who": "elicitation/create",
        "sampling-1": "sampling/createMessage",
        "roots-1": "roots/list",
    }
    answers = {
        "who": ACCEPT_ADA,
        "sampling-1": {"role": "assistant", "content": {"type": "text", "text": "hey"}, "model": "m"},
        "roots-1": {"roots": [{"uri": "file:///r"}]},
    }
    done = await modern(
        dispatcher, "tools/call", {"name": "everything", "inputResponses": answers, "requestState": first["requestState"]}
    )
    assert done["result"]["content"][0]["text"] == "Ada hey file:///r"


async def test_prompts_and_resource_reads_take_input_too() -> None:
    dispatcher = make_dispatcher()
    first = (await modern(dispatcher, "prompts/get", {"name": "ask_prompt"}))["result"]
    assert_valid_result("prompts/get", first)
    done = await modern(
        dispatcher,
        "prompts/get",
        {"name": "ask_prompt", "inputResponses": {"context": ACCEPT_ADA}, "requestState": first["requestState"]},
    )
    assert_valid_result("prompts/get", done["result"])
    assert done["result"]["messages"][0]["content"]["text"] == "Context: Ada"
    read = (await modern(dispatcher, "resources/read", {"uri": "test://asks"}))["result"]
    assert_valid_result("resources/read", read)
    assert list(read["inputRequests"]) == ["roots-1"]
    done = await modern(
        dispatcher,
        "resources/read",
        {
            "uri": "test://asks",
            "inputResponses": {"roots-1": {"roots": [{"uri": "file:///x"}]}},
            "requestState": read["requestState"],
        },
    )
    assert done["result"]["contents"][0]["text"] == "file:///x"
    assert done["result"]["resultType"] == "complete" and "cacheScope" in done["result"]


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        ({"requestState": "forged.state"}, "invalid"),
        ({"principal": "token:2"}, "invalid"),
        ({"arguments": {"punctuation": "."}}, "mismatch"),
    ],
)
async def test_a_refused_state_is_invalid_params_and_the_tool_does_not_run(change: dict[str, Any], reason: str) -> None:
    dispatcher = make_dispatcher()
    first = (await modern(dispatcher, "tools/call", {"name": "greet", "arguments": {"punctuation": "?"}}))["result"]
    RAN.clear()
    params = {
        "name": "greet",
        "arguments": change.get("arguments", {"punctuation": "?"}),
        "inputResponses": {"elicitation-1": ACCEPT_ADA},
        "requestState": change.get("requestState", first["requestState"]),
    }
    response = await modern(dispatcher, "tools/call", params, principal=change.get("principal", "token:1"))
    assert response["error"]["code"] == INVALID_PARAMS
    assert response["error"]["data"] == {"reason": reason}
    assert RAN == []


async def test_a_stale_state_is_expired_invalid_params() -> None:
    clock = Clock()
    dispatcher = make_dispatcher()
    dispatcher.request_state = RequestStateCodec(KEY, 60, clock=clock)
    first = (await modern(dispatcher, "tools/call", {"name": "greet"}))["result"]
    clock.now += 61
    retry = {"name": "greet", "inputResponses": {"elicitation-1": ACCEPT_ADA}, "requestState": first["requestState"]}
    response = await modern(dispatcher, "tools/call", retry)
    assert response["error"]["code"] == INVALID_PARAMS and response["error"]["data"] == {"reason": "expired"}


@pytest.mark.parametrize("responses", [None, 5, {"elicitation-1": 12345}, {"elicitation-1": {"action": "maybe"}}])
async def test_malformed_input_responses_are_a_json_rpc_error(responses: Any) -> None:
    response = await modern(make_dispatcher(), "tools/call", {"name": "greet", "inputResponses": responses})
    assert response["error"]["code"] == INVALID_PARAMS


async def test_a_broad_except_in_the_tool_does_not_swallow_the_question() -> None:
    result = (await modern(make_dispatcher(), "tools/call", {"name": "swallows"}))["result"]
    assert result["resultType"] == "input_required"


async def test_undeclared_capabilities_are_missing_required_client_capability() -> None:
    dispatcher = make_dispatcher()
    response = await modern(dispatcher, "tools/call", {"name": "greet"}, capabilities={"sampling": {}})
    assert response["error"]["code"] == -32021
    assert response["error"]["data"] == {"requiredCapabilities": {"elicitation": {}}}
    response = await modern(dispatcher, "tools/call", {"name": "url_mode"}, capabilities={"elicitation": {}})
    assert response["error"]["data"] == {"requiredCapabilities": {"elicitation": {"url": {}}}}
    asked = (await modern(dispatcher, "tools/call", {"name": "url_mode"}, capabilities={"elicitation": {"url": {}}}))["result"]
    assert asked["inputRequests"]["elicitation-1"]["params"]["mode"] == "url"
    # A client that lists only URL mode cannot show forms.
    response = await modern(dispatcher, "tools/call", {"name": "greet"}, capabilities={"elicitation": {"url": {}}})
    assert response["error"]["data"] == {"requiredCapabilities": {"elicitation": {"form": {}}}}


async def test_input_outside_the_three_methods_is_an_internal_error() -> None:
    dispatcher = make_dispatcher()

    async def completes(ref: Any, argument: Any, context: Any, ctx: RequestContext) -> list[str]:
        await ctx.list_roots()
        return []

    dispatcher.provider.complete = completes  # type: ignore[method-assign]
    response = await modern(
        dispatcher,
        "completion/complete",
        {"ref": {"type": "ref/prompt", "name": "ask_prompt"}, "argument": {"name": "a", "value": ""}},
    )
    assert response["error"]["code"] == -32603


async def test_the_same_tool_asks_the_client_in_the_handshake_era() -> None:
    dispatcher = make_dispatcher()
    session = MemorySession(client_capabilities=ALL_CAPS)
    sent: list[dict[str, Any]] = []

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)
        if message.get("method") == "elicitation/create":
            dispatcher.pending.resolve(session.id, jsonrpc.Response(message["id"], ACCEPT_ADA, None))

    ctx = dispatcher.context(session, 1, send=send)
    response = await dispatcher.handle_request(jsonrpc.Request(1, "tools/call", {"name": "greet"}), ctx)
    assert response is not None and response["result"] == {"content": [{"type": "text", "text": "Hello, Ada!"}]}
    assert [m["method"] for m in sent] == ["elicitation/create"]
    assert sent[0]["params"] == {"message": "Your name?", "requestedSchema": NAME_FORM}  # no MRTR key on the wire
