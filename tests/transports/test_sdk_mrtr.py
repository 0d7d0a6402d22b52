"""Multi round-trip requests (MCP 2026-07-28) with the official Python SDK's ``Client`` against a live daphne:
the same fixture tools answer an elicitation, sampling or roots question through InputRequiredResult and a
retry (pinned and in auto mode) and through a request to the client (legacy mode); and the requestState is
checked on the wire (tampered, foreign, replayed on another request)."""

from __future__ import annotations

from typing import Any

import httpx
import mcp.types as types
import pytest
from mcp import Client
from mcp.shared.exceptions import MCPError

from tests.live import LiveServer, shell, start_daphne
from tests.transports.cluster import Workers, workers_fixture  # noqa: F401 - the fixture, by name

MODERN = "2026-07-28"


def callbacks(asked: list[str]) -> dict[str, Any]:
    """The client's answers: a name or colour for elicitation, a fixed text for sampling, one root."""

    async def on_elicit(context: Any, params: types.ElicitRequestParams) -> types.ElicitResult:
        asked.append(f"elicitation: {params.message}")
        properties = params.requested_schema["properties"]
        if "color" in properties:
            return types.ElicitResult(action="accept", content={"color": "blue"})
        if "context" in properties:
            return types.ElicitResult(action="accept", content={"context": "a test"})
        return types.ElicitResult(action="accept", content={"name": "Ada"})

    async def on_sample(context: Any, params: types.CreateMessageRequestParams) -> types.CreateMessageResult:
        asked.append(f"sampling: {params.messages[0].content.text}")
        return types.CreateMessageResult(
            role="assistant", content=types.TextContent(type="text", text="Paris"), model="test-model", stop_reason="endTurn"
        )

    async def on_roots(context: Any) -> types.ListRootsResult:
        asked.append("roots")
        return types.ListRootsResult(roots=[types.Root(uri="file:///work", name="work")])

    return {"elicitation_callback": on_elicit, "sampling_callback": on_sample, "list_roots_callback": on_roots}


@pytest.mark.parametrize("mode", [MODERN, "auto", "legacy"])
async def test_one_question_each_in_every_mode(daphne_server: LiveServer, mode: str) -> None:
    asked: list[str] = []
    async with Client(daphne_server.mcp_url, mode=mode, read_timeout_seconds=20, **callbacks(asked)) as client:
        elicited = await client.call_tool("test_input_required_result_elicitation", {})
        sampled = await client.call_tool("test_input_required_result_sampling", {})
        roots = await client.call_tool("test_input_required_result_list_roots", {})
    assert [elicited.content[0].text, sampled.content[0].text, roots.content[0].text] == [
        "Hello, Ada!",
        "The model said: Paris",
        "Client roots: file:///work",
    ]
    assert asked == ["elicitation: What is your name?", "sampling: What is the capital of France?", "roots"]


async def test_several_inputs_in_one_round_and_several_rounds(daphne_server: LiveServer) -> None:
    asked: list[str] = []
    async with Client(daphne_server.mcp_url, mode=MODERN, read_timeout_seconds=20, **callbacks(asked)) as client:
        multiple = await client.call_tool("test_input_required_result_multiple_inputs", {})
        assert multiple.content[0].text == "Paris Ada (roots: file:///work)"
        assert sorted(asked) == ["elicitation: What is your name?", "roots", "sampling: Generate a greeting"]
        asked.clear()
        rounds = await client.call_tool("test_input_required_result_multi_round", {})
        assert rounds.content[0].text == "Ada likes blue."
        assert asked == ["elicitation: Step 1: What is your name?", "elicitation: Step 2: What is your favorite color?"]


async def test_a_prompt_asks_through_a_round_trip(daphne_server: LiveServer) -> None:
    asked: list[str] = []
    async with Client(daphne_server.mcp_url, mode=MODERN, read_timeout_seconds=20, **callbacks(asked)) as client:
        result = await client.get_prompt("test_input_required_result_prompt")
    assert result.messages[0].content.text == "Answer with this context in mind: a test"
    assert asked == ["elicitation: What context should the prompt use?"]


async def test_an_undeclared_capability_is_the_specified_error(daphne_server: LiveServer) -> None:
    async with Client(daphne_server.mcp_url, mode=MODERN, read_timeout_seconds=20) as client:
        with pytest.raises(MCPError) as info:
            await client.call_tool("test_input_required_result_elicitation", {})
    assert info.value.error.code == -32021
    assert info.value.error.data == {"requiredCapabilities": {"elicitation": {}}}


# -- the requestState on the wire ----------------------------------------------------------------------------
def _post(
    server: LiveServer, method: str, params: dict[str, Any], *, request_id: int = 1, token: str | None = None
) -> httpx.Response:
    meta = {
        "io.modelcontextprotocol/protocolVersion": MODERN,
        "io.modelcontextprotocol/clientCapabilities": {"elicitation": {}},
    }
    headers = {
        "Accept": "application/json, text/event-stream",
        "Content-Type": "application/json",
        "MCP-Protocol-Version": MODERN,
        "Mcp-Method": method,
    }
    if "name" in params:
        headers["Mcp-Name"] = params["name"]
    if token is not None:
        headers["Authorization"] = f"Bearer {token}"
    body = {"jsonrpc": "2.0", "id": request_id, "method": method, "params": {**params, "_meta": meta}}
    return httpx.post(server.mcp_url, json=body, headers=headers, timeout=20)


def _first_round(server: LiveServer, tool: str = "test_input_required_result_multi_round", **kw: Any) -> dict[str, Any]:
    response = _post(server, "tools/call", {"name": tool, "arguments": {}}, **kw)
    assert response.status_code == 200, response.text
    result = response.json()["result"]
    assert result["resultType"] == "input_required"
    assert "ttlMs" not in result and "cacheScope" not in result  # never cacheable
    return result


def test_rounds_on_the_wire_carry_earlier_answers_in_a_new_state(daphne_server: LiveServer) -> None:
    first = _first_round(daphne_server)
    assert list(first["inputRequests"]) == ["step1"]
    answer1 = {"step1": {"action": "accept", "content": {"name": "Ada"}}}
    second = _post(
        daphne_server,
        "tools/call",
        {
            "name": "test_input_required_result_multi_round",
            "arguments": {},
            "inputResponses": answer1,
            "requestState": first["requestState"],
        },
        request_id=2,
    ).json()["result"]
    assert second["resultType"] == "input_required" and list(second["inputRequests"]) == ["step2"]
    assert second["requestState"] != first["requestState"]
    answer2 = {"step2": {"action": "accept", "content": {"color": "red"}}}  # step1 is not sent again
    third = _post(
        daphne_server,
        "tools/call",
        {
            "name": "test_input_required_result_multi_round",
            "arguments": {},
            "inputResponses": answer2,
            "requestState": second["requestState"],
        },
        request_id=3,
    ).json()
    assert third["result"]["resultType"] == "complete"
    assert third["result"]["content"][0]["text"] == "Ada likes red."


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        (lambda state: state + "-TAMPERED", "invalid"),
        (lambda state: "A" + state[1:], "invalid"),
        (lambda state: 42, "invalid"),
    ],
)
def test_a_bad_state_is_refused_before_the_tool_runs(daphne_server: LiveServer, change: Any, reason: str) -> None:
    first = _first_round(daphne_server, "test_input_required_result_tampered_state")
    response = _post(
        daphne_server,
        "tools/call",
        {
            "name": "test_input_required_result_tampered_state",
            "arguments": {},
            "inputResponses": {"confirm": {"action": "accept", "content": {"ok": True}}},
            "requestState": change(first["requestState"]),
        },
        request_id=7,
    )
    assert response.status_code == 200
    error = response.json()["error"]
    assert response.json()["id"] == 7
    assert error["code"] == -32602 and error["data"] == {"reason": reason}


def test_a_state_is_bound_to_its_request(daphne_server: LiveServer) -> None:
    first = _first_round(daphne_server, "test_input_required_result_request_state")
    answers = {"confirm": {"action": "accept", "content": {"ok": True}}}
    other = _post(
        daphne_server,
        "tools/call",
        {
            "name": "test_input_required_result_tampered_state",
            "arguments": {},
            "inputResponses": answers,
            "requestState": first["requestState"],
        },
        request_id=8,
    ).json()
    assert other["error"]["code"] == -32602 and other["error"]["data"] == {"reason": "mismatch"}
    same = _post(
        daphne_server,
        "tools/call",
        {
            "name": "test_input_required_result_request_state",
            "arguments": {},
            "inputResponses": answers,
            "requestState": first["requestState"],
        },
        request_id=9,
    ).json()
    assert same["result"]["content"][0]["text"].startswith("state-ok")


def test_each_round_may_reach_another_worker(workers: Workers) -> None:
    """A retry is an independent request: rounds 1 and 3 on one worker, round 2 on another (PostgreSQL and
    Redis, as in production), with the state each worker signs and verifies under the same derived key."""
    a, b = workers.start(), workers.start()
    tool = "test_input_required_result_multi_round"
    first = _first_round(a)
    second = _post(
        b,
        "tools/call",
        {
            "name": tool,
            "arguments": {},
            "inputResponses": {"step1": {"action": "accept", "content": {"name": "Ada"}}},
            "requestState": first["requestState"],
        },
        request_id=2,
    ).json()["result"]
    assert list(second["inputRequests"]) == ["step2"]
    third = _post(
        a,
        "tools/call",
        {
            "name": tool,
            "arguments": {},
            "inputResponses": {"step2": {"action": "accept", "content": {"color": "green"}}},
            "requestState": second["requestState"],
        },
        request_id=3,
    ).json()["result"]
    assert third["content"][0]["text"] == "Ada likes green."
    # No session was created for any of it, and each round left its own audit row.
    assert workers.query("SELECT count(*) FROM mcp_app_session")[0][0] == 0
    rows = workers.query("SELECT outcome, session_id FROM mcp_app_toolcall WHERE tool = %s ORDER BY id", (tool,))
    assert rows == [("needs_input", None), ("needs_input", None), ("ok", None)]


def test_a_state_is_bound_to_the_principal_and_credentials_are_checked_every_round(tmp_path: Any) -> None:
    """On a site that requires credentials: another user's token cannot use Alice's state (refused as if
    forged, so it does not learn the state is genuine), no token is 401, and Alice's own retry completes."""
    settings, env = "tests.auth_settings", {"MCP_TEST_DB": str(tmp_path / "db.sqlite3")}
    server = start_daphne(tmp_path, settings=settings, extra_env=env)
    try:
        alice, bob = shell(
            settings,
            env,
            "from django.contrib.auth.models import User; from mcp_app.models import Token; "
            "print(*(Token.create_for(User.objects.create_user(n), name=n)[1] for n in ('alice', 'bob')))",
        ).split()
        tool = "test_input_required_result_request_state"
        first = _first_round(server, tool, token=alice)
        retry = {
            "name": tool,
            "arguments": {},
            "inputResponses": {"confirm": {"action": "accept", "content": {"ok": True}}},
            "requestState": first["requestState"],
        }
        stolen = _post(server, "tools/call", retry, request_id=2, token=bob).json()
        assert stolen["error"]["code"] == -32602 and stolen["error"]["data"] == {"reason": "invalid"}
        assert _post(server, "tools/call", retry, request_id=3).status_code == 401
        done = _post(server, "tools/call", retry, request_id=4, token=alice).json()
        assert done["result"]["content"][0]["text"].startswith("state-ok")
    finally:
        server.stop()
    server.assert_no_traceback()
