"""One client cannot stall the server, against a live daphne (tests/batch_settings.py).

- A JSON-RPC batch (protocol 2025-03-26) holds at most ``MAX_BATCH_SIZE`` messages; a larger one is
  refused whole, on both transports, before any entry runs.
- While one client's largest accepted batch of slow reads runs, another client's pings and reads are
  answered promptly: a batch's entries run a few at a time, so they never fill Django's database thread.
- Every request that costs work counts against ``REQUEST_RATE``, batch entries one by one.
- A user's OAuth clients share one allowance: sessions, tool calls and requests are limited per user.

The figures (batch limit, time of the largest batch, ping latency during it) are printed; run with -s.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from mcp_app.conf import DEFAULTS
from tests.live import HEADERS, LATEST, LiveServer, bearer, initialize_message, open_session, shell, start_daphne
from tests.slow_resources.mcp import READ_SECONDS

SETTINGS = "tests.batch_settings"
BATCH_VERSION = "2025-03-26"  # the only protocol version with JSON-RPC batches
LIMIT = DEFAULTS["MAX_BATCH_SIZE"]


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[LiveServer, dict[str, str]]]:
    workdir = tmp_path_factory.mktemp("batches")
    env = {"MCP_TEST_DB": str(workdir / "db.sqlite3")}
    server = start_daphne(workdir, settings=SETTINGS, extra_env=env)
    # Bearer tokens for three users, and three OAuth clients (applications) of one more user, each with an
    # access token issued for this server.
    tokens = json.loads(
        shell(
            SETTINGS,
            env,
            f"""
import json, secrets
from datetime import timedelta
from django.contrib.auth.models import User
from django.utils import timezone
from oauth2_provider.models import AccessToken, Application
from mcp_app.models import Token
tokens = {{name: Token.create_for(User.objects.create_user(name, password="x"), name=name)[1]
          for name in ("mallory", "alice", "eve")}}
reader = User.objects.create_user("reader", password="x")
for client in ("one", "two", "three"):
    app = Application.objects.create(name=client, user=reader, client_type="public",
                                     authorization_grant_type="authorization-code", redirect_uris="http://127.0.0.1:9/cb")
    key = secrets.token_urlsafe(30)
    AccessToken.objects.create(user=reader, application=app, token=key, scope="mcp", resource=[{server.mcp_url!r}],
                               expires=timezone.now() + timedelta(hours=1))
    tokens["oauth-" + client] = key
print(json.dumps(tokens))
""",
        )
    )
    yield server, tokens
    server.stop()
    server.assert_no_traceback()


def batch(method: str, count: int, params: Any = None) -> list[dict[str, Any]]:
    """``count`` requests; ``params`` is a function of the entry's index."""
    return [{"jsonrpc": "2.0", "id": i, "method": method, **({"params": params(i)} if params else {})} for i in range(count)]


def reads(count: int) -> list[dict[str, Any]]:
    return batch("resources/read", count, lambda i: {"uri": f"slow://item/{i}"})


def test_largest_batch_does_not_stall_another_client(site: Any) -> None:
    server, tokens = site
    with httpx.Client(timeout=120) as http:
        mallory = open_session(http, server.mcp_url, tokens["mallory"], version=BATCH_VERSION)
        alice = open_session(http, server.mcp_url, tokens["alice"])
        ping = {"jsonrpc": "2.0", "id": "p", "method": "ping"}
        assert http.post(server.mcp_url, json=ping, headers=alice).status_code == 200
        outcome: dict[str, Any] = {}

        def send_batch() -> None:
            started = time.monotonic()
            with httpx.Client(timeout=120) as own:
                outcome["answer"] = own.post(server.mcp_url, json=reads(LIMIT), headers=mallory)
            outcome["seconds"] = time.monotonic() - started

        sender = threading.Thread(target=send_batch)
        sender.start()
        time.sleep(0.5)  # the batch is read and running
        pings: list[float] = []
        read_latency = None
        while sender.is_alive():
            started = time.monotonic()
            answer = http.post(server.mcp_url, json=ping, headers=alice)
            pings.append(time.monotonic() - started)
            assert answer.status_code == 200 and answer.json() == {"jsonrpc": "2.0", "id": "p", "result": {}}
            if read_latency is None:
                started = time.monotonic()
                read = http.post(
                    server.mcp_url,
                    json={"jsonrpc": "2.0", "id": "r", "method": "resources/read", "params": {"uri": "slow://item/alice"}},
                    headers=alice,
                )
                read_latency = time.monotonic() - started
                assert read.json()["result"]["contents"][0]["text"].startswith("item alice: ")
            time.sleep(0.1)
        sender.join()
    answer = outcome["answer"]
    assert answer.status_code == 200, answer.text[:500]
    results = answer.json()
    assert sorted(r["id"] for r in results) == list(range(LIMIT))
    assert all(r["result"]["contents"][0]["text"].startswith(f"item {r['id']}: ") for r in results)
    print(
        f"\nbatch limit {LIMIT}; the largest batch of slow reads ({READ_SECONDS * 1000:.0f} ms each) took "
        f"{outcome['seconds']:.2f} s; during it {len(pings)} pings from another client took at most "
        f"{max(pings) * 1000:.0f} ms (median {sorted(pings)[len(pings) // 2] * 1000:.0f} ms), "
        f"and one read {read_latency * 1000:.0f} ms"
    )
    # The batch's reads share Django's database thread, so the batch takes about LIMIT reads' time; the
    # other client's messages, which need that thread too, waited for a few reads at most, not the batch.
    assert outcome["seconds"] > LIMIT * READ_SECONDS * 0.8
    assert len(pings) >= 5 and read_latency is not None
    assert max(pings) < 1.0 and read_latency < 1.0, (pings, read_latency)


def test_batch_over_the_limit_is_refused_whole(site: Any) -> None:
    server, tokens = site
    with httpx.Client(timeout=60) as http:
        mallory = open_session(http, server.mcp_url, tokens["mallory"], version=BATCH_VERSION)
        for body in (batch("ping", LIMIT + 1), reads(40_000)):  # the attack: 40,000 reads in one POST
            started = time.monotonic()
            refused = http.post(server.mcp_url, json=body, headers=mallory)
            assert refused.status_code == 400, refused.text[:500]
            error = refused.json()["error"]
            assert error["code"] == -32600 and refused.json()["id"] is None
            assert f"{len(body)} messages" in error["message"] and f"limit of {LIMIT}" in error["message"]
            assert "MAX_BATCH_SIZE" in error["message"]
            assert time.monotonic() - started < 5  # refused before any entry ran (40,000 reads take 27 minutes)
        # The largest accepted batch of pings is answered, entry by entry.
        answered = http.post(server.mcp_url, json=batch("ping", LIMIT), headers=mallory)
        assert answered.status_code == 200 and sorted(r["id"] for r in answered.json()) == list(range(LIMIT))

        # The legacy transport takes batches in a 2025-03-26 session too, under the same limit.
        stream_headers = {"accept": "text/event-stream", **bearer(tokens["mallory"])}
        with http.stream("GET", f"{server.url}/sse", headers=stream_headers) as stream:
            lines = stream.iter_lines()  # kept: a closed line iterator would close the stream, and end the session
            endpoint = next(line for line in lines if line.startswith("data: "))[6:]
            legacy = {**HEADERS, **bearer(tokens["mallory"])}
            assert http.post(server.url + endpoint, json=initialize_message(BATCH_VERSION), headers=legacy).status_code == 202
            refused = http.post(server.url + endpoint, json=batch("ping", LIMIT + 1), headers=legacy)
            assert refused.status_code == 400 and refused.json()["error"]["code"] == -32600
            assert f"limit of {LIMIT}" in refused.json()["error"]["message"]
            assert http.post(server.url + endpoint, json=batch("ping", 3), headers=legacy).status_code == 202


def test_every_costly_batch_entry_counts_against_the_request_rate(site: Any) -> None:
    server, tokens = site
    with httpx.Client(timeout=60) as http:
        eve = open_session(http, server.mcp_url, tokens["eve"], version=BATCH_VERSION)
        listing = batch("resources/templates/list", LIMIT)
        for _ in range(4):  # REQUEST_RATE = (400, 60): four batches of 100 entries spend it
            assert http.post(server.mcp_url, json=listing, headers=eve).status_code == 200
        limited = http.post(server.mcp_url, json=listing, headers=eve)
        assert limited.status_code == 429 and 1 <= int(limited.headers["retry-after"]) <= 60
        error = limited.json()["error"]
        assert error["code"] == -32029 and error["data"] == {"retryAfter": int(limited.headers["retry-after"])}
        assert "REQUEST_RATE" in error["message"]
        single = http.post(
            server.mcp_url,
            json={"jsonrpc": "2.0", "id": 1, "method": "resources/read", "params": {"uri": "slow://item/1"}},
            headers=eve,
        )
        assert single.status_code == 429 and single.json()["error"]["code"] == -32029
        # Pings cost nothing and are never counted, alone or batched.
        assert http.post(server.mcp_url, json=batch("ping", LIMIT), headers=eve).status_code == 200


def test_oauth_clients_of_one_user_share_one_allowance(site: Any) -> None:
    server, tokens = site
    clients = [tokens[f"oauth-{name}"] for name in ("one", "two", "three")]
    call = {"jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": {"name": "uppercase_text", "arguments": {"text": "a"}}}
    with httpx.Client(timeout=60) as http:
        ping = {"jsonrpc": "2.0", "id": 2, "method": "ping"}
        # MAX_SESSIONS_PER_PRINCIPAL = 3, for the user, whichever client opened them: a fourth session, from the
        # third client, ends the user's least recently used one (the first client's), which then gets 404.
        first, *sessions = [open_session(http, server.mcp_url, token) for token in clients]
        sessions.append(open_session(http, server.mcp_url, clients[2]))
        evicted = http.post(server.mcp_url, json=ping, headers=first)
        assert evicted.status_code == 404 and evicted.json()["error"]["code"] == -32001
        assert all(http.post(server.mcp_url, json=ping, headers=session).status_code == 200 for session in sessions)
        # TOOL_CALL_RATE = (5, 60), for the user: 2 + 2 + 1 calls spend it, whichever client sends them.
        for session in (sessions[0], sessions[0], sessions[1], sessions[1], sessions[2]):
            assert http.post(server.mcp_url, json=call, headers=session).json()["result"]["content"][0]["text"] == "A"
        for session in sessions:
            limited = http.post(server.mcp_url, json=call, headers=session)
            assert limited.status_code == 429 and limited.json()["error"]["code"] == -32029
        # A session still belongs to the client that opened it: another client of the same user gets 404.
        stolen = http.post(server.mcp_url, json=ping, headers={**sessions[0], **bearer(clients[2])})
        assert stolen.status_code == 404 and stolen.json()["error"]["code"] == -32001
        # Ending one session frees a place for any of the user's clients: the next one ends nobody else's.
        assert http.delete(server.mcp_url, headers=sessions[0]).status_code == 204
        assert (
            http.post(server.mcp_url, json=initialize_message(LATEST), headers={**HEADERS, **bearer(clients[0])}).status_code
            == 200
        )
        assert all(http.post(server.mcp_url, json=ping, headers=session).status_code == 200 for session in sessions[1:])
