"""``manage.py mcp_stdio``: the official SDK's stdio client (and the Inspector CLI) against the real command,
run in a subprocess on a migrated temporary SQLite database."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import anyio
import mcp.types as types
import pytest
from mcp import ClientSession, StdioServerParameters
from mcp.client.stdio import stdio_client

from tests.live import REPO, migrate, shell
from tests.node_peers import node_env

SETTINGS = "tests.settings"


@pytest.fixture(scope="module")
def stdio_env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, str]]:
    """A migrated database with the user ``alice``; the environment the command runs in."""
    db = tmp_path_factory.mktemp("stdio") / "db.sqlite3"
    env = {**os.environ, "DJANGO_SETTINGS_MODULE": SETTINGS, "MCP_TEST_DB": str(db), "PYTHONUNBUFFERED": "1"}
    migrate(env)
    shell(SETTINGS, env, "from django.contrib.auth.models import User; User.objects.create_user('alice')")
    yield env


def command(*args: str) -> list[str]:
    return [sys.executable, "manage.py", "mcp_stdio", *args]


@asynccontextmanager
async def connect(env: dict[str, str], **callbacks: Any) -> AsyncIterator[ClientSession]:
    params = StdioServerParameters(command=sys.executable, args=command("--user", "alice")[1:], env=env, cwd=str(REPO))
    with open(os.devnull, "w") as errlog:  # noqa: PTH123 - the server's stderr (system check warnings)
        async with (
            stdio_client(params, errlog=errlog) as (read, write),
            ClientSession(read, write, **callbacks) as session,
        ):
            await session.initialize()
            yield session


async def test_sdk_client_lists_calls_reads_and_gets(stdio_env: dict[str, str]) -> None:
    async with connect(stdio_env) as session:
        assert session.protocol_version == "2025-11-25"
        tools = {tool.name for tool in (await session.list_tools()).tools}
        assert "uppercase_text" in tools
        result = await session.call_tool("uppercase_text", {"text": "hello stdio"})
        assert result.is_error is False
        assert [(c.type, c.text) for c in result.content] == [("text", "HELLO STDIO")]
        read = await session.read_resource("test://static-text")
        assert read.contents[0].text == "This is the content of the static text resource."
        prompt = await session.get_prompt("test_simple_prompt")
        assert prompt.messages[0].content.text == "This is a simple prompt for testing."
        await session.send_ping()


async def test_slow_requests_do_not_block_and_cancellation_works(stdio_env: dict[str, str]) -> None:
    async with connect(stdio_env) as session:
        async with anyio.create_task_group() as group:
            group.start_soon(session.call_tool, "wait_until_cancelled", {"label": "stdio"})
            with anyio.fail_after(5):
                await session.send_ping()  # answered while the slow call runs
            await anyio.sleep(0.2)
            # The SDK numbers requests from 0 (initialize): the slow call is 1.
            cancel = types.CancelledNotificationParams(request_id=1, reason="test")
            await session.send_notification(types.CancelledNotification(params=cancel))
            group.cancel_scope.cancel()  # the call is never answered: stop waiting for it
        with anyio.fail_after(5):
            while True:
                read = await session.read_resource("test://cancelled")
                if "stdio" in json.loads(read.contents[0].text):
                    break
                await anyio.sleep(0.05)


async def test_sampling_goes_to_the_client_and_back(stdio_env: dict[str, str]) -> None:
    async def sampling(context: Any, params: types.CreateMessageRequestParams) -> types.CreateMessageResult:
        return types.CreateMessageResult(
            role="assistant", content=types.TextContent(type="text", text="sampled over stdio"), model="test"
        )

    async with connect(stdio_env, sampling_callback=sampling) as session:
        result = await session.call_tool("test_sampling", {"prompt": "hi"})
        assert result.is_error is False
        assert "sampled over stdio" in result.content[0].text


def run_command(env: dict[str, str], *args: str, lines: tuple[str, ...] = ()) -> subprocess.CompletedProcess[str]:
    """Run the command with ``lines`` on stdin, then end of input."""
    feed = "".join(line + "\n" for line in lines)
    return subprocess.run(command(*args), cwd=REPO, env=env, input=feed, capture_output=True, text=True, timeout=60)


def test_bad_json_is_answered_and_eof_ends_cleanly(stdio_env: dict[str, str]) -> None:
    done = run_command(
        stdio_env, "--user", "alice", lines=("{not json", json.dumps({"jsonrpc": "2.0", "id": 7, "method": "ping"}))
    )
    assert done.returncode == 0, done.stderr
    answers = [json.loads(line) for line in done.stdout.splitlines()]  # stdout holds JSON-RPC lines only
    assert answers[0]["id"] is None and answers[0]["error"]["code"] == -32700
    assert answers[1] == {"jsonrpc": "2.0", "id": 7, "result": {}}


def test_unknown_user_exits_2_with_a_message(stdio_env: dict[str, str]) -> None:
    done = subprocess.run(
        command("--user", "nobody"), cwd=REPO, env=stdio_env, input="", capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 2
    assert "No user 'nobody'" in done.stderr
    assert done.stdout == ""


def test_bad_token_exits_2_with_a_message(stdio_env: dict[str, str]) -> None:
    done = subprocess.run(
        command("--token", "mcp_nope"), cwd=REPO, env=stdio_env, input="", capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 2
    assert "The token is refused" in done.stderr


def test_a_token_serves_as_its_owner(stdio_env: dict[str, str]) -> None:
    code = (
        "from django.contrib.auth.models import User; from mcp_app.models import Token; "
        "print(Token.create_for(User.objects.get(username='alice'), name='stdio', scopes='mcp')[1])"
    )
    key = shell(SETTINGS, stdio_env, code)
    call = {"name": "uppercase_text", "arguments": {"text": "token"}}
    done = run_command(
        stdio_env, "--token", key, lines=(json.dumps({"jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": call}),)
    )
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["result"]["content"] == [{"type": "text", "text": "TOKEN"}]


def test_inspector_cli_over_stdio(stdio_env: dict[str, str], tmp_path: Path) -> None:
    env = node_env(tmp_path)
    # The Inspector starts the server with an environment of its own: the database is passed with -e.
    passed = [arg for name in ("DJANGO_SETTINGS_MODULE", "MCP_TEST_DB") for arg in ("-e", f"{name}={stdio_env[name]}")]
    base = ["mcp-inspector", "--cli", *passed, *command("--user", "alice")]
    called = subprocess.run(
        [*base, "--method", "tools/call", "--tool-name", "uppercase_text", "--tool-arg", "text=hi there"],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert called.returncode == 0, called.stderr
    assert '"text": "HI THERE"' in called.stdout
