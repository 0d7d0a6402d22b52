"""OAuth 2.1 end to end against the demo site: django-oauth-toolkit issues the token, mcp_app checks it.

The official SDK client starts without credentials, gets 401 with ``resource_metadata``, reads the
protected resource metadata (RFC 9728) and the authorization server's metadata (RFC 8414), registers
itself (RFC 7591), sends the user to the authorization page (PKCE, ``resource`` per RFC 8707), and
exchanges the code for a token. The "browser" is an httpx client signed in to the admin as the demo's
librarian, who approves the request. The token then reaches what the librarian may read, and tokens
that are expired, for another resource, without a resource, or short of the scope are refused.
"""

from __future__ import annotations

import html
import json
import os
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import httpx2
import pytest
from mcp import ClientSession
from mcp.client.auth import OAuthClientProvider
from mcp.client.streamable_http import streamable_http_client
from mcp.shared.auth import AuthorizationCodeResult, OAuthClientInformationFull, OAuthClientMetadata, OAuthToken

from tests.live import REPO, LiveServer, free_port, start_daphne

INIT = {
    "jsonrpc": "2.0",
    "id": 1,
    "method": "initialize",
    "params": {"protocolVersion": "2025-11-25", "capabilities": {}, "clientInfo": {"name": "t", "version": "1"}},
}
HEADERS = {"content-type": "application/json", "accept": "application/json, text/event-stream"}


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[LiveServer, dict[str, str]]]:
    workdir: Path = tmp_path_factory.mktemp("oauth")
    env = {"MCPSITE_SQLITE": str(workdir / "demo.sqlite3"), "DJANGO_DEBUG": "1"}
    server = start_daphne(workdir, settings="mcpsite.settings", extra_env=env, app="mcpsite.asgi:application")
    manage(env, "load_demo_data")
    yield server, env
    server.stop()
    server.assert_no_traceback()


def manage(env: dict[str, str], *args: str) -> str:
    return subprocess.run(
        [sys.executable, "manage.py", *args],
        cwd=REPO,
        check=True,
        timeout=120,
        capture_output=True,
        text=True,
        env={**os.environ, "DJANGO_SETTINGS_MODULE": "mcpsite.settings", **env},
    ).stdout


class MemoryStorage:
    def __init__(self) -> None:
        self.tokens: OAuthToken | None = None
        self.client: OAuthClientInformationFull | None = None

    async def get_tokens(self) -> OAuthToken | None:
        return self.tokens

    async def set_tokens(self, tokens: OAuthToken) -> None:
        self.tokens = tokens

    async def get_client_info(self) -> OAuthClientInformationFull | None:
        return self.client

    async def set_client_info(self, client_info: OAuthClientInformationFull) -> None:
        self.client = client_info


async def signed_in_browser(server: LiveServer, username: str) -> httpx.AsyncClient:
    browser = httpx.AsyncClient(base_url=server.url, follow_redirects=False, timeout=20)
    page = await browser.get("/accounts/login/")
    token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', page.text).group(1)
    answer = await browser.post(
        "/accounts/login/", data={"username": username, "password": "mcp-demo", "csrfmiddlewaretoken": token, "next": "/"}
    )
    assert answer.status_code == 302, "the demo user could not sign in"
    return browser


async def test_sdk_client_completes_the_oauth_flow(demo: tuple[LiveServer, dict[str, str]]) -> None:
    server, env = demo
    browser = await signed_in_browser(server, "librarian")
    approved: dict[str, Any] = {}

    async def redirect_handler(url: str) -> None:
        query = parse_qs(urlsplit(url).query)
        approved["asked"] = query
        consent = await browser.get(url)  # the authorization page, with the librarian signed in
        assert consent.status_code == 200, consent.text[:500]
        # It says where the code goes (the redirect's host, prominently) and that the client registered itself.
        assert "<strong>127.0.0.1:9</strong>" in consent.text and "(a program on this computer)" in consent.text
        assert "This client registered itself" in consent.text
        fields = {
            name: html.unescape(value)
            for name, value in re.findall(r'<input type="hidden" name="([^"]+)" value="([^"]*)"', consent.text)
        }
        answer = await browser.post(urlsplit(url).path, data={**fields, "allow": "Authorize"})
        assert answer.status_code == 302, answer.text[:500]
        back = parse_qs(urlsplit(answer.headers["location"]).query)
        approved["result"] = AuthorizationCodeResult(
            code=back["code"][0], state=(back.get("state") or [None])[0], iss=(back.get("iss") or [None])[0]
        )

    async def callback_handler() -> AuthorizationCodeResult:
        return approved["result"]

    storage = MemoryStorage()
    metadata = OAuthClientMetadata(
        client_name="mcp_app test",
        redirect_uris=["http://127.0.0.1:9/callback"],
        grant_types=["authorization_code", "refresh_token"],
        response_types=["code"],
        token_endpoint_auth_method="none",
        scope="mcp",
    )
    auth = OAuthClientProvider(server.mcp_url, metadata, storage, redirect_handler, callback_handler)
    async with (
        httpx2.AsyncClient(auth=auth, timeout=30) as http,
        streamable_http_client(server.mcp_url, http_client=http) as (read, write),
        ClientSession(read, write) as session,
    ):
        await session.initialize()
        tools = {t.name for t in (await session.list_tools()).tools}
        assert {"uppercase_text", "library_member_list", "library_loan_list"} <= tools  # the librarian's view
        members = await session.call_tool("library_member_list", {"limit": 2})
        assert len(members.structured_content["items"]) == 2
    # PKCE with S256, the resource indicator for this server, and the scope from the metadata.
    asked = approved["asked"]
    assert asked["code_challenge_method"] == ["S256"] and asked["resource"] == [server.mcp_url] and asked["scope"] == ["mcp"]
    assert storage.client is not None and storage.tokens is not None
    token = storage.tokens.access_token
    await browser.aclose()

    # The token works on its own, and only in the Authorization header.
    async with httpx.AsyncClient(timeout=20) as client:
        ok = await client.post(server.mcp_url, json=INIT, headers={**HEADERS, "authorization": f"Bearer {token}"})
        assert ok.status_code == 200
        in_query = await client.post(f"{server.mcp_url}?access_token={token}", json=INIT, headers=HEADERS)
        assert in_query.status_code == 401


def make_token(
    env: dict[str, str], *, resource: str | None, scope: str = "mcp", expired: bool = False, app: str = "matrix"
) -> str:
    code = (
        "import secrets; from datetime import timedelta; from django.utils import timezone; "
        "from django.contrib.auth.models import User; from oauth2_provider.models import AccessToken, Application; "
        f"app, _ = Application.objects.get_or_create(name={app!r}, defaults=dict(client_type='public', "
        "authorization_grant_type='authorization-code', redirect_uris='http://127.0.0.1:9/cb')); "
        "key = secrets.token_urlsafe(30); "
        f"AccessToken.objects.create(user=User.objects.get(username='librarian'), application=app, token=key, "
        f"scope={scope!r}, resource={[resource] if resource else []!r}, "
        f"expires=timezone.now() + timedelta(hours={-1 if expired else 1})); print(key)"
    )
    return manage(env, "shell", "-c", code).split()[-1]


@pytest.mark.parametrize(
    ("case", "status", "error"),
    [
        ("valid", 200, None),
        ("expired", 401, "invalid_token"),
        ("another resource", 401, "invalid_token"),
        ("no resource", 401, "invalid_token"),
        ("insufficient scope", 403, "insufficient_scope"),
    ],
)
async def test_access_tokens_are_checked_for_audience_expiry_and_scope(
    demo: tuple[LiveServer, dict[str, str]], case: str, status: int, error: str | None
) -> None:
    server, env = demo
    resource = {"another resource": "http://other.example/mcp", "no resource": None}.get(case, server.mcp_url)
    token = make_token(env, resource=resource, scope="read" if case == "insufficient scope" else "mcp", expired=case == "expired")
    async with httpx.AsyncClient(timeout=20) as client:
        answer = await client.post(server.mcp_url, json=INIT, headers={**HEADERS, "authorization": f"Bearer {token}"})
        assert answer.status_code == status, answer.text
        if error:
            challenge = answer.headers["www-authenticate"]
            assert f'error="{error}"' in challenge
            assert f'resource_metadata="{server.url}/.well-known/oauth-protected-resource/mcp"' in challenge
            assert answer.json()["error"]["code"] == -32600 and answer.json()["error"]["message"]
            assert token not in answer.text
        # The server still serves the next request.
        metadata = await client.get(f"{server.url}/.well-known/oauth-protected-resource/mcp")
        assert metadata.json()["resource"] == server.mcp_url


async def test_a_token_for_another_port_of_this_host_is_refused(demo: tuple[LiveServer, dict[str, str]]) -> None:
    """ALLOWED_HOSTS ignores ports, so a caller can send ``Host: 127.0.0.1:<other port>`` to this server. The
    audience is this server's full origin (scheme, host and the port the connection arrived on), so a token
    issued for another server on another port of the same host is refused, whatever the Host header says."""
    server, env = demo
    other = free_port()
    assert other != server.port
    token = make_token(env, resource=f"http://127.0.0.1:{other}/mcp")
    forged = f"127.0.0.1:{other}"
    async with httpx.AsyncClient(timeout=20) as client:
        for host in (forged, None):
            headers = {**HEADERS, "authorization": f"Bearer {token}", **({"host": host} if host else {})}
            answer = await client.post(server.mcp_url, json=INIT, headers=headers)
            assert answer.status_code == 401, answer.text
            assert 'error="invalid_token"' in answer.headers["www-authenticate"]
            error = answer.json()["error"]
            assert error["code"] == -32600 and server.mcp_url in error["message"]  # names the resource to ask for
        # The metadata names the true resource too, so a client is never told to get a token for another port.
        metadata = await client.get(f"{server.url}/.well-known/oauth-protected-resource/mcp", headers={"host": forged})
        assert metadata.status_code == 200 and metadata.json()["resource"] == server.mcp_url
        # A token for this server works, with the port in Host or as given by the client library.
        own = make_token(env, resource=server.mcp_url)
        for host in (f"127.0.0.1:{server.port}", None):
            headers = {**HEADERS, "authorization": f"Bearer {own}", **({"host": host} if host else {})}
            assert (await client.post(server.mcp_url, json=INIT, headers=headers)).status_code == 200


async def test_mcp_inspector_completes_the_oauth_flow(demo: tuple[LiveServer, dict[str, str]], tmp_path: Path) -> None:
    """The Inspector CLI, given no credentials, registers itself, prints the authorization URL (no browser
    here: MCP_AUTO_OPEN_ENABLED makes it proceed without a TTY) and waits on its loopback callback. The
    "browser" signs in as the librarian, approves, and follows the redirect to the Inspector, which then
    exchanges the code and lists the tools."""
    import asyncio

    from tests.node_peers import node_env

    server, _env = demo
    env = {
        **node_env(tmp_path),
        "MCP_AUTO_OPEN_ENABLED": "true",
        "BROWSER": "true",
        "HOME": str(tmp_path),
        "MCP_INSPECTOR_SECRET_STORE": "memory",
    }
    inspector = await asyncio.create_subprocess_exec(
        "mcp-inspector",
        "--cli",
        server.mcp_url,
        "--transport",
        "http",
        "--method",
        "tools/list",
        env=env,
        cwd=tmp_path,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        url = None
        async with asyncio.timeout(60):
            while url is None:
                line = (await inspector.stderr.readline()).decode()
                assert line, "the Inspector ended without asking for authorization"
                found = re.search(r"Please navigate to: (\S+)", line)
                url = found.group(1) if found else None
        asked = parse_qs(urlsplit(url).query)
        assert asked["resource"] == [server.mcp_url] and asked["code_challenge_method"] == ["S256"]
        browser = await signed_in_browser(server, "librarian")
        consent = await browser.get(url)
        fields = {
            name: html.unescape(value)
            for name, value in re.findall(r'<input type="hidden" name="([^"]+)" value="([^"]*)"', consent.text)
        }
        approved = await browser.post(urlsplit(url).path, data={**fields, "allow": "Authorize"})
        assert approved.status_code == 302
        await browser.aclose()
        async with httpx.AsyncClient(timeout=20) as client:  # the redirect, to the Inspector's loopback callback
            assert (await client.get(approved.headers["location"])).status_code == 200
        async with asyncio.timeout(60):
            out, err = await inspector.communicate()
        assert inspector.returncode == 0, err.decode()[-2000:]
        tools = {tool["name"] for tool in json.loads(out)["tools"]}
        assert {"uppercase_text", "library_member_list"} <= tools  # as the librarian
    finally:
        if inspector.returncode is None:
            inspector.kill()
            await inspector.wait()


async def test_revoking_an_access_token_closes_its_open_stream(demo: tuple[LiveServer, dict[str, str]]) -> None:
    """Revocation at the authorization server (RFC 7009, same site) ends the sessions of that user and
    client at once: the open GET stream closes, and the token is refused afterwards."""
    import asyncio
    import time

    server, env = demo
    token = make_token(env, resource=server.mcp_url, app="revocation")  # the client's only token for the user
    auth = {"authorization": f"Bearer {token}"}
    async with httpx.AsyncClient(timeout=20) as client:
        opened = await client.post(server.mcp_url, json=INIT, headers={**HEADERS, **auth})
        session = {**auth, "mcp-session-id": opened.headers["mcp-session-id"], "mcp-protocol-version": "2025-11-25"}
        async with client.stream("GET", server.mcp_url, headers={**session, "accept": "text/event-stream"}) as stream:
            assert stream.status_code == 200
            client_id = manage(
                env,
                "shell",
                "-c",
                "from oauth2_provider.models import Application; print(Application.objects.get(name='revocation').client_id)",
            ).split()[-1]
            started = time.monotonic()
            revoked = await client.post(f"{server.url}/o/revoke_token/", data={"token": token, "client_id": client_id})
            assert revoked.status_code == 200, revoked.text
            async with asyncio.timeout(10):
                async for _ in stream.aiter_bytes():
                    pass  # ends when the server closes the stream
            assert time.monotonic() - started < 10
        again = await client.post(
            server.mcp_url, json={"jsonrpc": "2.0", "id": 2, "method": "ping"}, headers={**HEADERS, **session}
        )
        assert again.status_code == 401
