"""The bad-input and abuse matrix, against a daphne process with a real site's defaults: credentials
required (bearer tokens, session cookie), nothing public, small limits (tests/auth_settings.py).

Every case asserts the HTTP status and the JSON-RPC error code, that the body holds no traceback, SQL
or secret, and that the server then serves a good request. OAuth access tokens (expired, for another
audience, short of scope) are covered end to end in test_oauth.py.
"""

from __future__ import annotations

import json
import os
import socket
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from tests.live import HEADERS, LATEST, LiveServer, bearer, initialize_message, open_session, shell, start_daphne

SETTINGS = "tests.auth_settings"
INIT = initialize_message(client="abuse")
REDIS = ("127.0.0.1", 6379)
SECRET_KEY = "conformance-secret-key"


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[LiveServer, dict[str, str], dict[str, Any]]]:
    workdir = tmp_path_factory.mktemp("abuse")
    env = {"MCP_TEST_DB": str(workdir / "db.sqlite3")}
    try:
        socket.create_connection(REDIS, timeout=2).close()
        env.update(MCP_TEST_REDIS_URL="redis://127.0.0.1:6379/0", MCP_TEST_REDIS_PREFIX=f"abuse{os.getpid()}")
    except OSError:
        pass  # in-memory layer: only the test that revokes from another process needs Redis, and skips
    server = start_daphne(workdir, settings=SETTINGS, extra_env=env)
    credentials = json.loads(
        shell(
            SETTINGS,
            env,
            """
import json
from datetime import timedelta
from django.contrib.auth.models import User
from django.contrib.sessions.backends.db import SessionStore
from django.utils import timezone
from mcp_app.models import Token
alice = User.objects.create_user("alice", password="x")
bob = User.objects.create_user("bob", password="x")
carol = User.objects.create_user("carol", password="x")
tokens = {f"alice{i}": Token.create_for(alice, name=f"t{i}")[1] for i in range(12)}
tokens["bob"] = Token.create_for(bob, name="bob")[1]
tokens["carol"] = Token.create_for(carol, name="carol")[1]
tokens["expired"] = Token.create_for(alice, name="old", expires=timezone.now() - timedelta(minutes=1))[1]
revoked, tokens["revoked"] = Token.create_for(alice, name="revoked")
revoked.revoked = timezone.now(); revoked.save()
tokens["no_scope"] = Token.create_for(alice, name="read only", scopes="read")[1]
session = SessionStore()
session.update({"_auth_user_id": str(alice.pk), "_auth_user_backend": "django.contrib.auth.backends.ModelBackend",
                "_auth_user_hash": alice.get_session_auth_hash()})
session.create()
print(json.dumps({"tokens": tokens, "sessionid": session.session_key}))
""",
        )
    )
    yield server, env, credentials
    server.stop()
    if "MCP_TEST_REDIS_PREFIX" in env:
        import redis

        client = redis.Redis(*REDIS)
        for key in client.scan_iter(f"{env['MCP_TEST_REDIS_PREFIX']}*"):
            client.delete(key)
    server.assert_no_traceback()


@pytest.fixture(scope="module")
def http() -> Iterator[httpx.Client]:
    with httpx.Client(timeout=15) as client:
        yield client


def assert_clean(response: httpx.Response, credentials: dict[str, Any]) -> None:
    text = response.text
    for leak in ("Traceback", "SELECT ", "sqlite3", "psycopg", SECRET_KEY, *credentials["tokens"].values()):
        assert leak not in text, f"{leak!r} in an error body: {text[:500]}"


def assert_still_serving(server: LiveServer, http: httpx.Client, credentials: dict[str, Any]) -> None:
    token = credentials["tokens"]["alice11"]
    ok = http.post(server.mcp_url, json=INIT, headers={**HEADERS, **bearer(token)})
    assert ok.status_code == 200 and ok.json()["result"]["protocolVersion"] == LATEST
    http.delete(server.mcp_url, headers={**bearer(token), "mcp-session-id": ok.headers["mcp-session-id"]})


def raw(server: LiveServer, request: bytes) -> tuple[int, bytes]:
    """Send bytes as they are (to lie about sizes) and return the status and body."""
    with socket.create_connection(("127.0.0.1", server.port), timeout=15) as sock:
        sock.sendall(request)
        data = b""
        while b"\r\n\r\n" not in data or (b"0\r\n\r\n" not in data and b"content-length" not in data.lower()):
            chunk = sock.recv(65536)
            if not chunk:
                break
            data += chunk
            if len(data) > 1 << 20:
                break
    head, _, body = data.partition(b"\r\n\r\n")
    return int(head.split()[1]), body


# -- the matrix: (name, how to send it, expected status, expected JSON-RPC code) ---------------------------------
def _body(headers: dict[str, str], content: bytes) -> dict[str, Any]:
    return {"headers": headers, "content": content}


CASES: list[tuple[str, str, dict[str, Any], int, int | None]] = [
    # name, needs (none | token | session), request, status, JSON-RPC code
    ("malformed JSON", "session", _body({}, b'{"jsonrpc": "2.0", "id": 1, "method": '), 400, -32700),
    ("invalid UTF-8", "session", _body({}, b'{"jsonrpc": "2.0", "id": 1, "method": "ping\xff\xfe"}'), 400, -32700),
    ("NaN in JSON", "session", _body({}, b'{"jsonrpc": "2.0", "id": NaN, "method": "ping"}'), 400, -32700),
    (
        "number that overflows (1e999)",
        "session",
        _body(
            {},
            b'{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"uppercase_text",'
            b'"arguments":{"text":"a","n":{"m":[1, -1e999]}}}}',
        ),
        400,
        -32700,
    ),
    (
        "nested 5,000 deep",
        "session",
        _body({}, b'{"jsonrpc":"2.0","id":1,"method":"ping","params":{"x":' + b"[" * 5000 + b"]" * 5000 + b"}}"),
        400,
        -32700,
    ),
    ("not JSON-RPC: a number", "session", _body({}, b"42"), 400, -32600),
    ("not JSON-RPC: no method", "session", _body({}, b'{"jsonrpc": "2.0", "id": 1}'), 400, -32600),
    ("not JSON-RPC: version 1.0", "session", _body({}, b'{"jsonrpc": "1.0", "id": 1, "method": "ping"}'), 400, -32600),
    (
        "wrong Content-Type",
        "session",
        _body({"content-type": "text/plain"}, b'{"jsonrpc":"2.0","id":1,"method":"ping"}'),
        415,
        -32600,
    ),
    ("wrong Accept", "session", _body({"accept": "text/html"}, b'{"jsonrpc":"2.0","id":1,"method":"ping"}'), 406, -32600),
    (
        "batch where not allowed",
        "session",
        _body({}, b'[{"jsonrpc":"2.0","id":1,"method":"ping"},{"jsonrpc":"2.0","id":2,"method":"ping"}]'),
        400,
        -32600,
    ),
    ("oversized body (declared)", "session", _body({}, b'{"x": "' + b"a" * (70 * 1024) + b'"}'), 413, -32600),
    ("unknown method", "session", _body({}, b'{"jsonrpc":"2.0","id":1,"method":"listTools"}'), 200, -32601),
    (
        "unknown tool",
        "session",
        _body({}, b'{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"rm_rf","arguments":{}}}'),
        200,
        -32602,
    ),
    (
        "schema-violating data tool arguments",
        "session",
        _body(
            {},
            b'{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"library_book_list",'
            b'"arguments":{"filters":{"author__user__password__startswith":"p"}}}}',
        ),
        200,
        -32602,
    ),
    # Values the database cannot take: -32602 before any query (they were OverflowError, -32603).
    (
        "huge integer in a data tool filter",
        "session",
        _body(
            {},
            b'{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"library_book_list",'
            b'"arguments":{"filters":{"pages__in":[1, 1000000000000000000000000000000]}}}}',
        ),
        200,
        -32602,
    ),
    (
        "huge integer as a related key",
        "session",
        _body(
            {},
            b'{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"library_book_list",'
            b'"arguments":{"filters":{"author__in":[18446744073709551616]}}}}',
        ),
        200,
        -32602,
    ),
    (
        "NUL in a data tool filter",
        "session",
        _body(
            {},
            b'{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"library_book_list",'
            b'"arguments":{"filters":{"title":"a\\u0000b"}}}}',
        ),
        200,
        -32602,
    ),
    (
        "huge key in a resource URI",
        "session",
        _body(
            {},
            b'{"jsonrpc":"2.0","id":1,"method":"resources/read","params":{"uri":'
            b'"django://library/book/1000000000000000000000000000000"}}',
        ),
        200,
        -32002,
    ),
    (
        "arguments not an object",
        "session",
        _body({}, b'{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"uppercase_text","arguments":[1]}}'),
        200,
        -32602,
    ),
    ("missing session id", "token", _body({}, b'{"jsonrpc":"2.0","id":1,"method":"ping"}'), 400, -32600),
    (
        "malformed session id",
        "token",
        _body({"mcp-session-id": "x" * 300}, b'{"jsonrpc":"2.0","id":1,"method":"ping"}'),
        404,
        -32001,
    ),
    (
        "unknown session id",
        "token",
        _body({"mcp-session-id": "n0t-a-real-session"}, b'{"jsonrpc":"2.0","id":1,"method":"ping"}'),
        404,
        -32001,
    ),
    ("no credentials", "none", _body({}, json.dumps(INIT).encode()), 401, -32600),
    ("not a bearer scheme", "none", _body({"authorization": "Basic YWxpY2U6eA=="}, json.dumps(INIT).encode()), 401, -32600),
    ("unknown token", "none", _body({"authorization": "Bearer mcp_forged-token"}, json.dumps(INIT).encode()), 401, -32600),
    (
        "foreign bearer token",
        "none",
        _body({"authorization": "Bearer eyJhbGciOi.forged"}, json.dumps(INIT).encode()),
        401,
        -32600,
    ),
]


@pytest.mark.parametrize(("name", "needs", "request_", "status", "code"), CASES, ids=[c[0] for c in CASES])
def test_bad_input(
    site: Any, http: httpx.Client, name: str, needs: str, request_: dict[str, Any], status: int, code: int | None
) -> None:
    server, _env, credentials = site
    headers = dict(HEADERS)
    if needs == "session":
        headers = open_session(http, server.mcp_url, credentials["tokens"]["alice0"])
    elif needs == "token":
        headers.update(bearer(credentials["tokens"]["alice0"]))
    answer = http.post(server.mcp_url, content=request_["content"], headers={**headers, **request_["headers"]})
    assert answer.status_code == status, answer.text
    assert answer.json()["error"]["code"] == code and answer.json()["error"]["message"]
    if status == 401:
        assert answer.headers["www-authenticate"].startswith('Bearer realm="mcp"')
    assert_clean(answer, credentials)
    if needs == "session":
        http.delete(server.mcp_url, headers=headers)
    assert_still_serving(server, http, credentials)


@pytest.mark.parametrize("which", ["expired", "revoked", "no_scope", "in the query string"])
def test_refused_tokens(site: Any, http: httpx.Client, which: str) -> None:
    server, _env, credentials = site
    tokens = credentials["tokens"]
    if which == "in the query string":
        answer = http.post(
            f"{server.mcp_url}?access_token={tokens['alice0']}&token={tokens['alice0']}", json=INIT, headers=HEADERS
        )
        status, error = 401, None
    else:
        answer = http.post(server.mcp_url, json=INIT, headers={**HEADERS, **bearer(tokens[which])})
        status, error = (403, "insufficient_scope") if which == "no_scope" else (401, "invalid_token")
    assert answer.status_code == status and answer.json()["error"]["code"] == -32600
    challenge = answer.headers["www-authenticate"]
    assert f'resource_metadata="{server.url}/.well-known/oauth-protected-resource/mcp"' in challenge
    assert 'scope="mcp"' in challenge
    assert (f'error="{error}"' in challenge) if error else "error=" not in challenge
    assert_clean(answer, credentials)
    assert_still_serving(server, http, credentials)


@pytest.mark.parametrize("endpoint", ["/mcp", "/sse", "/sse/messages?session_id=x", "/.well-known/oauth-protected-resource"])
@pytest.mark.parametrize(("header", "value", "status"), [("host", "evil.example", 421), ("origin", "https://evil.example", 403)])
def test_bad_host_and_origin_come_before_authentication_and_sessions(
    site: Any, http: httpx.Client, endpoint: str, header: str, value: str, status: int
) -> None:
    server, _env, credentials = site
    method = "GET" if endpoint.startswith(("/sse?", "/.well")) or endpoint == "/sse" else "POST"
    answer = http.request(
        method,
        server.url + endpoint,
        content=json.dumps(INIT).encode(),
        headers={**HEADERS, "accept": "application/json, text/event-stream", header: value},
    )
    assert answer.status_code == status, answer.text  # not 401, not 404: nothing was looked up
    assert answer.json()["error"]["code"] == -32600
    assert_clean(answer, credentials)
    assert_still_serving(server, http, credentials)


def test_sessions_are_bound_to_their_principal(site: Any, http: httpx.Client) -> None:
    server, _env, credentials = site
    tokens = credentials["tokens"]
    alice = open_session(http, server.mcp_url, tokens["alice1"])
    ping = {"jsonrpc": "2.0", "id": 5, "method": "ping"}
    for other in (tokens["bob"], tokens["alice2"]):  # another user, and another token of the same user
        stolen = http.post(server.mcp_url, json=ping, headers={**alice, **bearer(other)})
        assert stolen.status_code == 404 and stolen.json()["error"]["code"] == -32001
        assert http.delete(server.mcp_url, headers={**alice, **bearer(other)}).status_code == 404
    assert http.post(server.mcp_url, json=ping, headers=alice).json() == {"jsonrpc": "2.0", "id": 5, "result": {}}
    # The legacy transport: a POST naming another principal's session_id is refused the same way.
    with http.stream("GET", f"{server.url}/sse", headers={"accept": "text/event-stream", **bearer(tokens["alice3"])}) as stream:
        lines = stream.iter_lines()
        endpoint = next(line for line in lines if line.startswith("data: "))[6:]
        stolen = http.post(server.url + endpoint, json=ping, headers={**HEADERS, **bearer(tokens["bob"])})
        assert stolen.status_code == 404 and stolen.json()["error"]["code"] == -32001
        mine = http.post(server.url + endpoint, json=ping, headers={**HEADERS, **bearer(tokens["alice3"])})
        assert mine.status_code == 202
    http.delete(server.mcp_url, headers=alice)


def test_second_get_stream_and_stream_cap(site: Any, http: httpx.Client) -> None:
    server, _env, credentials = site
    token = credentials["tokens"]["alice4"]
    first, second, third = (open_session(http, server.mcp_url, token) for _ in range(3))
    get = {"accept": "text/event-stream"}
    with http.stream("GET", server.mcp_url, headers={**first, **get}) as one:
        assert one.status_code == 200
        again = http.get(server.mcp_url, headers={**first, **get})
        assert again.status_code == 409 and again.json()["error"]["code"] == -32600
        with http.stream("GET", server.mcp_url, headers={**second, **get}) as two:
            assert two.status_code == 200
            capped = http.get(server.mcp_url, headers={**third, **get})  # MAX_STREAMS_PER_PRINCIPAL = 2
            # No Retry-After: waiting frees nothing, closing one of the caller's streams does (the message says so).
            assert capped.status_code == 429 and "retry-after" not in capped.headers
            assert capped.json()["error"]["code"] == -32029 and "close one" in capped.json()["error"]["message"]
    # The cap counts open streams: once they are closed, a stream opens again.
    time.sleep(0.5)
    with http.stream("GET", server.mcp_url, headers={**third, **get}) as three:
        assert three.status_code == 200
    # MAX_SESSIONS_PER_PRINCIPAL = 3: a fourth opens, and the token's least recently used session ends.
    assert http.post(server.mcp_url, json=INIT, headers={**HEADERS, **bearer(token)}).status_code == 200
    ping = {"jsonrpc": "2.0", "id": 9, "method": "ping"}
    ended = [http.post(server.mcp_url, json=ping, headers=h).status_code for h in (first, second, third)]
    assert ended == [404, 200, 200]  # the first: its last_seen is the oldest (written at most once a minute)
    assert_still_serving(server, http, credentials)


def test_tool_calls_are_rate_limited_per_principal(site: Any, http: httpx.Client) -> None:
    server, _env, credentials = site
    session = open_session(http, server.mcp_url, credentials["tokens"]["alice5"])
    call = {"jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": {"name": "uppercase_text", "arguments": {"text": "a"}}}
    statuses = [http.post(server.mcp_url, json=call, headers=session).status_code for _ in range(9)]
    assert statuses == [200] * 8 + [429]  # TOOL_CALL_RATE = (8, 60)
    limited = http.post(server.mcp_url, json=call, headers=session)
    assert limited.status_code == 429 and 1 <= int(limited.headers["retry-after"]) <= 60
    assert limited.json()["error"] == {
        "code": -32029,
        "message": limited.json()["error"]["message"],
        "data": {"retryAfter": int(limited.headers["retry-after"])},
    }
    # Other requests on the session, and other principals' tool calls, go on.
    assert http.post(server.mcp_url, json={"jsonrpc": "2.0", "id": 2, "method": "ping"}, headers=session).status_code == 200
    other = open_session(http, server.mcp_url, credentials["tokens"]["alice6"])
    assert http.post(server.mcp_url, json=call, headers=other).json()["result"]["content"][0]["text"] == "A"


def test_session_cookie_needs_origin_and_csrf(site: Any, http: httpx.Client) -> None:
    server, _env, credentials = site
    cookie = {"cookie": f"sessionid={credentials['sessionid']}; csrftoken=abcdefghijklmnopqrstuvwxyz012345"}
    no_origin = http.post(server.mcp_url, json=INIT, headers={**HEADERS, **cookie})
    assert no_origin.status_code == 401 and "Origin" in no_origin.json()["error"]["message"]
    origin = {"origin": server.url}
    no_csrf = http.post(server.mcp_url, json=INIT, headers={**HEADERS, **cookie, **origin})
    assert no_csrf.status_code == 401 and "CSRF" in no_csrf.json()["error"]["message"]
    ok = http.post(
        server.mcp_url, json=INIT, headers={**HEADERS, **cookie, **origin, "x-csrftoken": "abcdefghijklmnopqrstuvwxyz012345"}
    )
    assert ok.status_code == 200, ok.text
    assert_clean(no_csrf, credentials)


def test_a_user_sees_only_what_they_may(site: Any, http: httpx.Client) -> None:
    server, _env, credentials = site
    session = open_session(http, server.mcp_url, credentials["tokens"]["alice7"])
    listed = http.post(server.mcp_url, json={"jsonrpc": "2.0", "id": 1, "method": "tools/list"}, headers=session).json()
    names = {t["name"] for t in listed["result"]["tools"]}
    # Signed in (IsAuthenticated): code tools, public exposures, and loans (scoped to alice's own rows).
    assert {"uppercase_text", "library_book_list", "library_loan_list"} <= names
    assert not {"library_member_list", "library_member_get"} & names  # no view_member permission
    read = http.post(
        server.mcp_url,
        json={"jsonrpc": "2.0", "id": 2, "method": "resources/read", "params": {"uri": "django://library/member/1"}},
        headers=session,
    ).json()
    assert read["error"]["code"] == -32002


def test_revoked_token_and_deactivated_user_lose_their_open_streams(site: Any, http: httpx.Client) -> None:
    server, env, credentials = site
    if "MCP_TEST_REDIS_URL" not in env:
        pytest.skip("Redis is not running on 127.0.0.1:6379; revoking from another process needs a shared channel layer")
    for token_name, withdraw in (
        ("alice8", "t = Token.objects.get(key_hash=Token.hash({token!r})); t.revoked = timezone.now(); t.save()"),
        ("carol", "u = User.objects.get(username='carol'); u.is_active = False; u.save()"),
    ):
        token = credentials["tokens"][token_name]
        session = open_session(http, server.mcp_url, token)
        with http.stream("GET", server.mcp_url, headers={**session, "accept": "text/event-stream"}) as stream:
            assert stream.status_code == 200
            started = time.monotonic()
            shell(
                SETTINGS,
                env,
                "from django.utils import timezone; from django.contrib.auth.models import User; "
                "from mcp_app.models import Token; " + withdraw.format(token=token) + "; print('ok')",
            )
            for _ in stream.iter_bytes():
                pass  # ends when the server closes the stream
            assert time.monotonic() - started < 10
        refused = http.post(server.mcp_url, json={"jsonrpc": "2.0", "id": 1, "method": "ping"}, headers=session)
        assert refused.status_code == 401 and 'error="invalid_token"' in refused.headers["www-authenticate"]
    assert_still_serving(server, http, credentials)


def test_understated_and_chunked_bodies(site: Any, http: httpx.Client) -> None:
    server, _env, credentials = site
    token = credentials["tokens"]["alice9"]
    body = json.dumps(INIT).encode()
    head = (
        f"POST /mcp HTTP/1.1\r\nHost: 127.0.0.1:{server.port}\r\nContent-Type: application/json\r\n"
        f"Accept: application/json, text/event-stream\r\nAuthorization: Bearer {token}\r\nConnection: close\r\n"
    )
    # Content-Length says less than is sent: only the declared bytes are the body, and they are not JSON.
    status, answer = raw(server, (head + "Content-Length: 20\r\n\r\n").encode() + body)
    assert status == 400 and b"-32700" in answer
    # Chunked, growing past MAX_BODY_SIZE (64 KiB here) with no length declared: 413 before it is all read.
    chunk = b"a" * 16384
    chunks = b"".join(b"%x\r\n%s\r\n" % (len(chunk), chunk) for _ in range(6)) + b"0\r\n\r\n"
    status, answer = raw(server, (head + "Transfer-Encoding: chunked\r\n\r\n").encode() + chunks)
    assert status == 413 and b"-32600" in answer
    assert_still_serving(server, http, credentials)


def test_the_audit_log_cannot_be_dodged_or_flooded(site: Any, http: httpx.Client) -> None:
    """Arguments nested 700 deep or as large as the body limit are answered and leave exactly one audit row
    each, cut to AUDIT_MAX_ARGUMENTS_BYTES (16 KiB) with a marker; a stored prompt template that uses
    {% debug %} answers -32603 instead of rendering."""
    server, env, credentials = site
    token = shell(
        SETTINGS,
        env,
        "from django.contrib.auth.models import User; from mcp_app.models import Token; "
        "print(Token.create_for(User.objects.create_user('dave', password='x'), name='dave')[1])",
    )
    session = open_session(http, server.mcp_url, token)

    def tools_call(name: str, arguments: str) -> dict[str, Any]:
        body = f'{{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{{"name":"{name}","arguments":{arguments}}}}}'
        answer = http.post(server.mcp_url, content=body.encode(), headers=session)
        assert answer.status_code == 200, answer.text
        assert_clean(answer, credentials)
        return answer.json()

    deep = tools_call("uppercase_text", '{"text":' + '{"a":' * 700 + "1" + "}" * 700 + "}")
    assert deep["result"]["isError"] is True
    big = tools_call("uppercase_text", json.dumps({"text": "b" * 60_000}))
    assert big["result"]["content"][0]["text"] == "B" * 60_000
    unknown = tools_call("rm_rf", json.dumps({"blob": "c" * 60_000}))
    assert unknown["error"]["code"] == -32602
    rows = json.loads(
        shell(
            SETTINGS,
            env,
            "import json; from mcp_app.models import ToolCall; print(json.dumps([[r.tool, r.outcome, "
            "json.dumps(r.arguments)] for r in ToolCall.objects.filter(user__username='dave')"
            ".order_by('id')]))",
        )
    )
    assert [row[:2] for row in rows] == [["uppercase_text", "tool_error"], ["uppercase_text", "ok"], ["rm_rf", "refused"]]
    assert all(len(row[2]) <= 16 * 1024 for row in rows)
    assert "nested more than" in rows[0][2]
    assert all('"_truncated": true' in row[2] and '"original_bytes": 600' in row[2] for row in rows[1:])

    shell(
        SETTINGS,
        env,
        "from mcp_app.models import Prompt, PromptMessage; p = Prompt.objects.create(name='leaky'); "
        "PromptMessage.objects.create(prompt=p, template='{% debug %}{% include \"admin/base.html\" %}'); print(1)",
    )
    deadline = time.monotonic() + 70  # the bus reaches the server at once with Redis; the catalog's age cap otherwise
    while True:
        got = http.post(
            server.mcp_url,
            json={"jsonrpc": "2.0", "id": 3, "method": "prompts/get", "params": {"name": "leaky"}},
            headers=session,
        )
        assert got.status_code == 200 and "result" not in got.json(), got.text
        if "Unknown prompt" not in got.json()["error"]["message"] or time.monotonic() > deadline:
            break
        time.sleep(0.5)
    assert got.json()["error"]["code"] == -32603 and "Prompt 'leaky'" in got.json()["error"]["message"]
    assert_clean(got, credentials)
    assert_still_serving(server, http, credentials)


def test_cors_for_allowed_browser_origins_only(site: Any, http: httpx.Client) -> None:
    server, _env, credentials = site
    inspector = {
        "origin": "http://localhost:6274",
        "access-control-request-method": "POST",
        "access-control-request-headers": "authorization, content-type, mcp-session-id",
    }
    preflight = http.options(server.mcp_url, headers=inspector)
    assert preflight.status_code == 204
    assert preflight.headers["access-control-allow-origin"] == "http://localhost:6274"
    assert {"authorization", "mcp-session-id", "mcp-protocol-version"} <= {
        h.strip() for h in preflight.headers["access-control-allow-headers"].split(",")
    }
    refused = http.post(server.mcp_url, json=INIT, headers={**HEADERS, "origin": "http://localhost:6274"})
    assert refused.status_code == 401 and refused.headers["access-control-allow-origin"] == "http://localhost:6274"
    assert "www-authenticate" in refused.headers["access-control-expose-headers"]  # the browser may start OAuth
    ok = http.post(
        server.mcp_url,
        json=INIT,
        headers={**HEADERS, **bearer(credentials["tokens"]["alice10"]), "origin": "http://localhost:6274"},
    )
    assert ok.status_code == 200 and "mcp-session-id" in ok.headers["access-control-expose-headers"]
    http.delete(
        server.mcp_url, headers={**bearer(credentials["tokens"]["alice10"]), "mcp-session-id": ok.headers["mcp-session-id"]}
    )
    evil = http.options(server.mcp_url, headers={**inspector, "origin": "https://evil.example"})
    assert evil.status_code == 403 and "access-control-allow-origin" not in evil.headers
    assert_still_serving(server, http, credentials)


@pytest.mark.parametrize("port", ["other", "none"])
def test_a_host_naming_another_port_does_not_move_the_oauth_audience(site: Any, http: httpx.Client, port: str) -> None:
    """ALLOWED_HOSTS ignores ports, so a Host naming another port (or none) passes the Host check; the resource
    the metadata names (the OAuth tokens' audience) keeps the port this server listens on. A token for
    another port is refused end to end in test_oauth.py."""
    server, _env, credentials = site
    forged = {"other": f"127.0.0.1:{server.port + 1}", "none": "127.0.0.1"}[port]
    metadata = http.get(f"{server.url}/.well-known/oauth-protected-resource/mcp", headers={"host": forged})
    assert metadata.status_code == 200 and metadata.json()["resource"] == server.mcp_url
    assert_clean(metadata, credentials)
    assert_still_serving(server, http, credentials)


def test_a_stream_neither_outlives_its_token_nor_hears_of_rows_it_cannot_read(site: Any, http: httpx.Client) -> None:
    """A stream opened with a token that expires closes at the expiry (then 401); a stream whose caller may
    not read library members is not told when one is created. More cases: test_expiry.py,
    test_list_changed_scoping.py."""
    from tests.transports.streams import Stream

    server, env, credentials = site
    if "MCP_TEST_REDIS_URL" not in env:
        pytest.skip("Redis is not running on 127.0.0.1:6379; rows saved in another process need a shared channel layer")
    made = json.loads(
        shell(
            SETTINGS,
            env,
            """
import json
from datetime import timedelta
from django.contrib.auth.models import User
from django.utils import timezone
from mcp_app.models import Token
alice = User.objects.get(username="alice")
expires = timezone.now() + timedelta(seconds=6)
print(json.dumps({"short": Token.create_for(alice, name="short", expires=expires)[1], "expires": expires.timestamp(),
                  "long": Token.create_for(alice, name="long")[1]}))
""",
        )
    )
    expires = time.monotonic() + (made["expires"] - time.time())
    short = open_session(http, server.mcp_url, made["short"])
    expiring, reader = Stream(server.mcp_url, short), Stream(server.mcp_url, open_session(http, server.mcp_url, made["long"]))
    try:
        shell(
            SETTINGS,
            env,
            "from datetime import date; from mcpsite.library.models import Member; "
            "Member.objects.create(name='M', email='m@example.com', card_number='abuse-1', joined=date(2020, 1, 1)); "
            "print('ok')",
        )
        ended = expiring.wait_ended(timeout=max(0.0, expires - time.monotonic()) + 10)
        assert ended is not None and ended <= expires + 2.5, "the stream outlived its token"
        assert "notifications/resources/list_changed" not in reader.methods() + expiring.methods()
    finally:
        expiring.close()
        reader.close()
    refused = http.post(server.mcp_url, json={"jsonrpc": "2.0", "id": 1, "method": "ping"}, headers=short)
    assert refused.status_code == 401 and 'error="invalid_token"' in refused.headers["www-authenticate"]
    assert_clean(refused, credentials)
    assert_still_serving(server, http, credentials)


def test_a_batch_is_capped_and_each_of_its_entries_counts(site: Any, http: httpx.Client) -> None:
    """One client cannot stall the server: a JSON-RPC batch (2025-03-26 only) over MAX_BATCH_SIZE (100) is
    refused whole, and every entry that costs work counts against REQUEST_RATE (100 a minute here). The
    latency of other clients during the largest batch is measured in test_batches.py."""
    server, env, credentials = site
    token = shell(
        SETTINGS,
        env,
        "from django.contrib.auth.models import User; from mcp_app.models import Token; "
        "print(Token.create_for(User.objects.create_user('batcher'), name='batches')[1])",
    )
    answer = http.post(
        server.mcp_url,
        json={**INIT, "params": {**INIT["params"], "protocolVersion": "2025-03-26"}},
        headers={**HEADERS, **bearer(token)},
    )
    session = {
        **HEADERS,
        **bearer(token),
        "mcp-session-id": answer.headers["mcp-session-id"],
        "mcp-protocol-version": "2025-03-26",
    }

    def entries(method: str, count: int) -> list[dict[str, Any]]:
        return [{"jsonrpc": "2.0", "id": i, "method": method} for i in range(count)]

    over = http.post(server.mcp_url, json=entries("ping", 101), headers=session)
    assert over.status_code == 400 and over.json()["error"]["code"] == -32600
    assert "limit of 100 (MCP_APP['MAX_BATCH_SIZE'])" in over.json()["error"]["message"]
    assert_clean(over, credentials)
    largest = http.post(server.mcp_url, json=entries("resources/templates/list", 100), headers=session)
    assert largest.status_code == 200 and len(largest.json()) == 100  # the whole allowance, in one POST
    limited = http.post(server.mcp_url, json={"jsonrpc": "2.0", "id": 1, "method": "prompts/list"}, headers=session)
    assert limited.status_code == 429 and 1 <= int(limited.headers["retry-after"]) <= 60
    assert limited.json()["error"]["code"] == -32029 and "REQUEST_RATE" in limited.json()["error"]["message"]
    assert_clean(limited, credentials)
    assert http.post(server.mcp_url, json=entries("ping", 100), headers=session).status_code == 200  # pings are free
    assert_still_serving(server, http, credentials)
