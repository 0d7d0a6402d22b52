"""This project against the official MCP SDK's server, side by side in one run: figures and ratios.

    .venv/bin/python -m tests.benchmarks.bench_vs_sdk [--seconds 10] [--connections 32] [--streams 1000]
        [--database sqlite|postgres] [--audit-log on|off] [--write-ahead unless_read_only|always]
        [--only http,sse,streams] [--rounds 1] [--slices 5]

Both servers serve the same ``echo`` tool (tests/benchmarks/echo.py, a sync function; both run it on the event
loop: the SDK does so with every sync tool, mcp_app with ``run_in_thread=False``, and a row measures it in
Django's thread, mcp_app's default, as ``echo_in_thread``) on 127.0.0.1, one process each, pinned to
one core (``taskset``, CPU 0); the load generators run on another (CPU 1), so each server has its core to
itself and the ratios compare servers rather than who won the CPU. The servers are started together and stay
up, idle but for the one under load: one load runs at a time, and a comparison's loads are measured in turns
(``--slices``, 5 by default: five turns of 2 s for a 10 s load, the order reversed every other turn), so that
the machine's speed drifting during a comparison (by a third within a minute, on a shared VM) falls on both
sides alike. Rates are the turns' requests over their time; latencies are the median turn's.

- This project: the demo site as shipped (mcpsite.asgi, tests/benchmarks/demo_settings.py: bearer token,
  audit log on, DEBUG off, the per-caller caps raised so one client can drive it; ``echo`` is read-only, so
  its audit row is written once per call, and ``--write-ahead always`` measures a row written before and
  completed after, as for a tool that changes things), on SQLite (default, a
  file in a temporary directory) or PostgreSQL (``--database postgres``: a scratch database
  ``mcp_app_bench_vs_sdk`` on 127.0.0.1 as user postgres, created and dropped by the run). Migrated once,
  one user with a token from ``manage.py mcp_token``.
- The SDK (``mcp`` package, tests/benchmarks/sdk_server.py) under uvicorn, behind its own bearer-token check
  with the same kind of token: stateful Streamable HTTP as it ships (answers as SSE) and with JSON answers,
  stateless Streamable HTTP answering the 2026-07-28 per-request protocol, and its legacy SSE server.
- A bare ASGI app (tests/benchmarks/bare_asgi.py): the ceiling of daphne and uvicorn on this machine; on
  daphne both as daphne ships and as this project runs it (Twisted's form parsing skipped,
  ``DAPHNE_SKIP_FORM_PARSING``), since that setting makes daphne itself cheaper, for the bare app too.

Measured (wrk, Debian package ``wrk``, for single POSTs; tests/benchmarks/sse_client.py for what needs a stream):

1. tools/call over Streamable HTTP on an open session, uvicorn and daphne (and ``echo_in_thread`` on uvicorn);
   the 2026-07-28 stateless call
   where this project answers it (else n/a); the bare app's ceiling on each server (on daphne, with and
   without the tuning this project applies).
2. The legacy SSE round trip: ``--connections`` sessions, each POSTing tools/call to its messages URL and
   reading the answer from its stream before the next; ours and the SDK's in turns as well, each turn on
   sessions of its own.
3. ``--streams`` idle legacy streams (10000 for the issue's target): the server's memory per stream (RSS
   growth / N) and the time to open them all (64 being opened at a time).

With ``--rounds N`` the loads of 1. and 2. are measured N times in turn (3. once, on fresh servers), and the
table shows the median of the rounds' ratios with their range: the SDK's own figures move 10-40 % between
runs on a shared machine, so one round's ratio can land on either side of a target.

Every load is preceded by a checked call (the answer must be the echo of its text) and a one-second warm-up
that is not counted. The table counts 2xx answers only; wrk's non-2xx answers and socket errors are printed
with its figures, and a run with non-2xx answers is followed by a short one printing the first few. Not part of the test
suite: figures, not pass/fail. Absolute figures depend on the machine and on what else runs on it; the
ratios are what compares.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import secrets
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from importlib.metadata import version
from pathlib import Path
from typing import Any

import httpx
import psycopg

from tests.live import HEADERS, REPO, LiveServer, migrate, open_session, start_daphne

from .load import WrkResult, cpu_seconds, echo_call, merge, pin, rss_kb, wrk
from .sse_client import ProtocolError, RoundTrips, check_echo, open_streams, round_trips, run

SETTINGS = "tests.benchmarks.demo_settings"
OURS = "mcpsite.asgi:application"
SDK = "tests.benchmarks.sdk_server:app"
BARE = "tests.benchmarks.bare_asgi:application"
PG_DATABASE = "mcp_app_bench_vs_sdk"
STATELESS_VERSION = "2026-07-28"
SERVER_CPU, CLIENT_CPU = "0", "1"


@dataclass
class Row:
    """One comparison of the table: our figure, the other's, and which way is better."""

    label: str
    ours: float | None
    theirs: float | None
    unit: str
    higher_is_better: bool = True
    #: Issue 14's target for this row, as printed.
    target: str = ""
    #: With several rounds: each round's ratio (the line then shows their median, and their range).
    ratios: list[float] | None = None

    @property
    def ratio(self) -> float | None:
        return self.ours / self.theirs if self.ours is not None and self.theirs else None

    def line(self) -> str:
        def fmt(value: float | None) -> str:
            if value is None:
                return "n/a"
            return f"{value:,.0f} {self.unit}" if value >= 100 else f"{value:,.1f} {self.unit}"

        if self.ratios:
            ratio = f"{statistics.median(self.ratios):.2f}x ({min(self.ratios):.2f}-{max(self.ratios):.2f})"
        else:
            ratio = f"{self.ratio:.2f}x" if self.ratio is not None else "n/a"
        direction = "" if self.higher_is_better else " (lower is better)"
        return f"| {self.label} | {fmt(self.ours)} | {fmt(self.theirs)} | {ratio}{direction} | {self.target} |"


def turns(seconds: int, slices: int, count: int) -> tuple[int, list[list[int]]]:
    """How ``count`` loads of ``seconds`` each are measured in ``slices`` turns: the seconds of one turn (a
    whole second at least: wrk counts whole seconds), and each turn's order of the loads (their indexes), reversed
    every other turn (A B, B A, A B ...), so that a drift of the machine's speed falls on each load alike."""
    order = list(range(count))
    return max(seconds // slices, 1), [order if turn % 2 == 0 else order[::-1] for turn in range(slices)]


@dataclass
class Load:
    """One load to measure: a wrk POST of ``body`` with ``headers`` to ``live``'s MCP URL, named ``label``.

    ``renew``: gives the headers of each turn instead (a session opened for it): a server that ends a session
    under load (the SDK's stateful server with JSON answers does) then fails that turn only, not the rest.
    """

    label: str
    live: LiveServer
    body: dict[str, Any]
    headers: dict[str, str]
    renew: Callable[[], dict[str, str]] | None = None


def medians(rounds: list[list[Row]]) -> list[Row]:
    """One row per comparison of several rounds: the median of each side's figures, and every round's ratio
    (its median is what compares: the two servers of a round ran minutes apart, on a machine whose speed
    drifts, so a ratio is taken within a round, never across rounds)."""
    merged = []
    for same in zip(*rounds, strict=True):
        first = same[0]

        def middle(values: list[float | None]) -> float | None:
            known = [v for v in values if v is not None]
            return statistics.median(known) if known else None

        merged.append(
            Row(
                first.label,
                middle([r.ours for r in same]),
                middle([r.theirs for r in same]),
                first.unit,
                first.higher_is_better,
                first.target,
                [r.ratio for r in same if r.ratio is not None],
            )
        )
    return merged


class Bench:
    """The run's shared state: where servers run from, their environment, the token, the options."""

    def __init__(self, args: argparse.Namespace, workdir: Path, env: dict[str, str]) -> None:
        self.args, self.workdir, self.env = args, workdir, env
        self.token = create_token(env)
        self.sdk_token = secrets.token_urlsafe(32)
        self.details: list[str] = []

    # -- servers ------------------------------------------------------------------------------------------
    @contextlib.contextmanager
    def serve(self, label: str, server: str, app: str, extra_env: dict[str, str] | None = None) -> Iterator[LiveServer]:
        """Start ``app`` under ``server`` (daphne or uvicorn), pinned to the server CPU, for the block."""
        live = start_daphne(
            self.workdir,
            server=server,
            app=app,
            settings=SETTINGS,
            run_migrations=False,
            extra_env={**self.env, **(extra_env or {})},
        )
        try:
            pin(live.process.pid, SERVER_CPU)
            yield live
        finally:
            live.stop()
            if "Traceback" in live.log():
                print(f"!! {label}: the server logged a traceback, see below\n{live.log()[-3000:]}", file=sys.stderr)

    def sdk(self, mode: str) -> contextlib.AbstractContextManager[LiveServer]:
        return self.serve(f"SDK {mode}", "uvicorn", SDK, {"BENCH_SDK_MODE": mode, "BENCH_TOKEN": self.sdk_token})

    # -- loads --------------------------------------------------------------------------------------------
    def interleaved(self, loads: list[Load]) -> list[WrkResult]:
        """Measure ``loads`` (each checked already) in turns: ``--slices`` turns of ``--seconds / --slices``
        each, the order reversed every other turn (A B, B A, A B ...), so that a drift of the machine's speed
        while they run falls on each of them alike; one merged result per load (:func:`merge`).

        Each load is warmed up for a second first. The figures (with the server's CPU use) go to the details;
        a load with non-2xx answers is followed by a short run that prints the first few.
        """
        common = {"connections": self.args.connections, "workdir": self.workdir, "cpus": CLIENT_CPU}
        for load in loads:
            wrk(load.live.mcp_url, seconds=1, body=load.body, headers=load.headers, **common)
        turn_seconds, schedule = turns(self.args.seconds, self.args.slices, len(loads))
        slices: list[list[WrkResult]] = [[] for _ in loads]
        for order in schedule:
            for index in order:
                load = loads[index]
                headers = load.renew() if load.renew is not None else load.headers
                pid = load.live.process.pid
                used, started = cpu_seconds(pid), time.monotonic()
                result = wrk(load.live.mcp_url, seconds=turn_seconds, body=load.body, headers=headers, **common)
                result.server_cpu = (cpu_seconds(pid) - used) / (time.monotonic() - started)
                slices[index].append(result)
        merged = [merge(runs) for runs in slices]
        for load, result in zip(loads, merged, strict=True):
            self.details.append(f"{load.label:58s} {result.row()}")
            print(self.details[-1], flush=True)
            if result.non2xx:  # say what they were: a short second run that shows them
                shown = wrk(load.live.mcp_url, seconds=2, body=load.body, headers=load.headers, show_failures=True, **common)
                for failure in shown.failures:
                    print(f"    non-2xx answer: {failure}", flush=True)
        return merged

    def tools_call(self, label: str, live: LiveServer, token: str, tool: str = "echo") -> Load:
        """tools/call echo (or ``tool``, of the same signature) on one Streamable HTTP session (2025-11-25),
        checked once: the load to measure, each turn on a session of its own."""

        def session() -> dict[str, str]:
            with httpx.Client(timeout=30) as http:
                return open_session(http, live.mcp_url, token)

        headers = session()
        with httpx.Client(timeout=30) as http:
            check_echo(answer_of(http.post(live.mcp_url, json=echo_call(1, "check", tool=tool), headers=headers)), "check")
        return Load(label, live, echo_call(tool=tool), headers, session)

    def stateless_call(self, label: str, live: LiveServer, token: str) -> Load | None:
        """tools/call echo as a 2026-07-28 request (no session), checked once: the load to measure; None if
        the server does not answer it."""
        meta = {
            "io.modelcontextprotocol/protocolVersion": STATELESS_VERSION,
            "io.modelcontextprotocol/clientCapabilities": {},
            "io.modelcontextprotocol/clientInfo": {"name": "bench", "version": "1"},
        }
        headers = {
            **HEADERS,
            "authorization": f"Bearer {token}",
            "mcp-protocol-version": STATELESS_VERSION,
            "mcp-method": "tools/call",
            "mcp-name": "echo",
        }
        body = echo_call(1, "check", meta=meta)
        response = httpx.post(live.mcp_url, json=body, headers=headers, timeout=30)
        try:
            check_echo(answer_of(response), "check")
        except (httpx.HTTPStatusError, ProtocolError, ValueError, KeyError):  # refused or not understood: not served
            self.details.append(f"{label:58s} not answered: HTTP {response.status_code} {response.text[:100]!r}")
            print(self.details[-1], flush=True)
            return None
        return Load(label, live, echo_call(meta=meta), headers)

    def sse_round_trips(self, sides: list[tuple[str, LiveServer, str]]) -> list[float]:
        """Legacy SSE round trips on each of ``sides`` (label, server, token; path ``/sse``) in turns, as
        :meth:`interleaved` takes wrk loads: ``--slices`` turns of ``--seconds / --slices`` each (after a
        second's warm-up on the turn's own sessions), the order reversed every other turn. Each side's rate is
        its round trips over its turns' time, its latencies those of every turn together."""
        turn_seconds, schedule = turns(self.args.seconds, self.args.slices, len(sides))
        measured = [RoundTrips(0.0) for _ in sides]
        for order in schedule:
            for index in order:
                _, live, token = sides[index]
                headers = {"authorization": f"Bearer {token}"}
                part = run(
                    round_trips("127.0.0.1", live.port, "/sse", headers, connections=self.args.connections, seconds=turn_seconds)
                )
                measured[index].seconds += part.seconds
                measured[index].latencies += part.latencies
        for (label, _, _), side in zip(sides, measured, strict=True):
            self.details.append(f"{label:58s} {side.row()}")
            print(self.details[-1], flush=True)
        return [side.rate for side in measured]

    def idle_streams(self, label: str, live: LiveServer, path: str, token: str) -> tuple[float, float]:
        """Open ``--streams`` idle legacy streams on a fresh server: (KiB of RSS each, seconds to open them)."""
        count = self.args.streams

        async def measure() -> tuple[float, float]:
            await asyncio.sleep(0.5)
            before = rss_kb(live.process.pid)
            streams, seconds = await open_streams("127.0.0.1", live.port, path, {"authorization": f"Bearer {token}"}, count=count)
            await asyncio.sleep(1.0)  # the server settles: buffers of the opening burst freed
            after = rss_kb(live.process.pid)
            for stream in streams:
                stream.close()
            return (after - before) / count, seconds

        per_stream, seconds = run(measure())
        self.details.append(f"{label:58s} {count} streams in {seconds:.2f} s, {per_stream:.1f} KiB each")
        print(self.details[-1], flush=True)
        return per_stream, seconds


def answer_of(response: httpx.Response) -> dict[str, Any]:
    """The JSON-RPC answer in a POST's response, JSON or a one-event SSE stream."""
    response.raise_for_status()
    if response.headers.get("content-type", "").startswith("text/event-stream"):
        data = [line[5:].strip() for line in response.text.splitlines() if line.startswith("data:")]
        return json.loads(data[-1])
    return response.json()


def manage(env: dict[str, str], *args: str) -> str:
    """Run a management command of the demo (as an operator would); return what it printed."""
    done = subprocess.run([sys.executable, "manage.py", *args], cwd=REPO, env=env, check=True, capture_output=True, text=True)
    return done.stdout.strip()


def create_token(env: dict[str, str]) -> str:
    """A user ``bench`` and a bearer token of theirs (``manage.py mcp_token``)."""
    manage(env, "createsuperuser", "--noinput", "--username", "bench", "--email", "bench@example.com")
    return manage(env, "mcp_token", "bench", "--name", "benchmark").splitlines()[-1]


@contextlib.contextmanager
def database(kind: str, workdir: Path) -> Iterator[dict[str, str]]:
    """The environment of a migrated scratch database: a SQLite file in ``workdir``, or a PostgreSQL database
    created for the run and dropped after it."""
    env = {**os.environ, "DJANGO_SETTINGS_MODULE": SETTINGS, "DJANGO_DEBUG": "0", "PYTHONUNBUFFERED": "1"}
    if kind == "sqlite":
        env["MCPSITE_SQLITE"] = str(workdir / "bench.sqlite3")
        migrate(env)
        yield env
        return
    admin = "host=127.0.0.1 user=postgres dbname=postgres"
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f"DROP DATABASE IF EXISTS {PG_DATABASE} WITH (FORCE)")
        conn.execute(f"CREATE DATABASE {PG_DATABASE}")
    env["MCPSITE_POSTGRES_DB"] = PG_DATABASE
    try:
        migrate(env)
        yield env
    finally:
        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute(f"DROP DATABASE IF EXISTS {PG_DATABASE} WITH (FORCE)")


def compare(bench: Bench, parts: set[str], rounds: int = 1) -> list[list[Row]]:
    """Run the loads of ``parts`` (http, sse) ``rounds`` times; one table row per comparison, per round.

    Every server is started once, before the first round, and stays up (idle but for the load it is under), so
    that within a round each comparison's loads run in turns (:meth:`Bench.interleaved`): the machine's speed
    drifts, and a ratio of loads measured in the same seconds compares the servers rather than the moments.
    """
    results: list[list[Row]] = [[] for _ in range(rounds)]
    with contextlib.ExitStack() as stack:
        live: dict[str, LiveServer] = {}

        def start(key: str, server: str, app: str, extra_env: dict[str, str] | None = None) -> None:
            live[key] = stack.enter_context(bench.serve(key, server, app, extra_env))

        sdk_env = {"BENCH_TOKEN": bench.sdk_token}
        if parts & {"http", "sse"}:
            start("ours uvicorn", "uvicorn", OURS)
        if "http" in parts:
            start("ours daphne", "daphne", OURS)
            for mode in ("stateful", "stateful_json", "stateless"):
                start(f"SDK {mode}", "uvicorn", SDK, {**sdk_env, "BENCH_SDK_MODE": mode})
            for server in ("daphne", "uvicorn"):
                start(f"bare {server}", server, BARE)
            # daphne as this project runs it (Twisted's form parsing skipped): the ceiling of the same server.
            start("bare daphne tuned", "daphne", BARE, {"BENCH_DAPHNE_SKIP_FORM_PARSING": "1"})
        if "sse" in parts:
            start("SDK sse", "uvicorn", SDK, {**sdk_env, "BENCH_SDK_MODE": "sse"})
        for number, rows in enumerate(results, 1):
            if rounds > 1:
                print(f"-- round {number} of {rounds}", flush=True)
            if "http" in parts:
                rows += http_rows(bench, live)
            if "sse" in parts:
                rows.append(sse_row(bench, live))
    return results


def sse_row(bench: Bench, live: dict[str, LiveServer]) -> Row:
    """One round of the legacy SSE round trips, ours and the SDK's in turns."""
    ours, sdk = bench.sse_round_trips(
        [
            ("this project, uvicorn, legacy SSE round trip", live["ours uvicorn"], bench.token),
            ("SDK, uvicorn, legacy SSE round trip", live["SDK sse"], bench.sdk_token),
        ]
    )
    return Row("legacy SSE round trip (tools/call), uvicorn: vs the SDK's SSE server", ours, sdk, "req/s", True, ">= 1.5x")


def http_rows(bench: Bench, live: dict[str, LiveServer]) -> list[Row]:
    """One round of the tools/call comparisons, the loads of each comparison measured in turns."""
    stateful = [
        bench.tools_call("this project, uvicorn, tools/call (stateful)", live["ours uvicorn"], bench.token),
        bench.tools_call("SDK, uvicorn, tools/call (stateful, SSE answers)", live["SDK stateful"], bench.sdk_token),
        bench.tools_call("SDK, uvicorn, tools/call (stateful, JSON answers)", live["SDK stateful_json"], bench.sdk_token),
        bench.tools_call(
            "this project, uvicorn, tools/call (stateful, echo_in_thread)", live["ours uvicorn"], bench.token, "echo_in_thread"
        ),
        Load("bare ASGI app, uvicorn (the ceiling)", live["bare uvicorn"], echo_call(), HEADERS),
    ]
    ours_uvicorn, sdk_stateful, sdk_json, ours_in_thread, bare_uvicorn = (r.ok_rps for r in bench.interleaved(stateful))
    stateless = [
        bench.stateless_call("this project, uvicorn, tools/call (2026-07-28)", live["ours uvicorn"], bench.token),
        bench.stateless_call("SDK, uvicorn, tools/call (2026-07-28 stateless)", live["SDK stateless"], bench.sdk_token),
    ]
    answered = bench.interleaved([load for load in stateless if load is not None])
    rates = iter(result.ok_rps for result in answered)
    ours_stateless, sdk_stateless = (None if load is None else next(rates) for load in stateless)
    daphne = [
        bench.tools_call("this project, daphne, tools/call (stateful)", live["ours daphne"], bench.token),
        Load("bare ASGI app, daphne (the ceiling)", live["bare daphne"], echo_call(), HEADERS),
        Load("bare ASGI app, daphne, form parsing skipped as ours", live["bare daphne tuned"], echo_call(), HEADERS),
    ]
    ours_daphne, bare_daphne, tuned_daphne = (result.ok_rps for result in bench.interleaved(daphne))
    return [
        Row(
            "tools/call, Streamable HTTP, uvicorn: vs the SDK's stateful server",
            ours_uvicorn,
            sdk_stateful,
            "req/s",
            True,
            ">= 3.0x",
        ),
        Row("tools/call, Streamable HTTP, uvicorn: vs the SDK stateful with JSON answers", ours_uvicorn, sdk_json, "req/s"),
        Row(
            "tools/call of a sync tool in Django's thread (the default; echo_in_thread), uvicorn: vs the SDK's stateful server",
            ours_in_thread,
            sdk_stateful,
            "req/s",
        ),
        Row(
            "tools/call, 2026-07-28, uvicorn: vs the SDK's stateless server",
            ours_stateless,
            sdk_stateless,
            "req/s",
            True,
            ">= 3.0x",
        ),
        Row("tools/call, daphne: vs a bare ASGI app on daphne", ours_daphne, bare_daphne, "req/s", True, ">= 0.5x"),
        Row(
            "tools/call, daphne: vs a bare ASGI app on daphne with the same tuning (form parsing skipped)",
            ours_daphne,
            tuned_daphne,
            "req/s",
            True,
            ">= 0.5x",
        ),
        Row("tools/call, uvicorn: vs a bare ASGI app on uvicorn", ours_uvicorn, bare_uvicorn, "req/s"),
    ]


def stream_rows(bench: Bench) -> list[Row]:
    """Idle legacy streams, each server fresh (measured once, whatever ``--rounds`` says)."""
    with bench.serve("ours uvicorn", "uvicorn", OURS) as live:
        ours_kib, ours_s = bench.idle_streams("this project, uvicorn, idle legacy streams", live, "/sse", bench.token)
    with bench.sdk("sse") as live:
        sdk_kib, sdk_s = bench.idle_streams("SDK, uvicorn, idle legacy streams", live, "/sse", bench.sdk_token)
    n = bench.args.streams
    return [
        Row(f"{n:,} idle legacy streams, uvicorn: memory each", ours_kib, sdk_kib, "KiB", False, "<= 20 KiB (10,000)"),
        Row(f"{n:,} idle legacy streams, uvicorn: time to open them all", ours_s, sdk_s, "s", False, "<= 1.0x (10,000)"),
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=int, default=10, help="of each measured load (after a 1 s warm-up)")
    parser.add_argument(
        "--slices",
        type=int,
        default=5,
        help="measure the loads of a comparison in this many turns each, alternating (drift falls on both alike)",
    )
    parser.add_argument("--connections", type=int, default=32, help="wrk connections; legacy SSE sessions at once")
    parser.add_argument("--streams", type=int, default=1000, help="idle legacy streams to open (the issue's target: 10000)")
    parser.add_argument("--database", choices=["sqlite", "postgres"], default="sqlite")
    parser.add_argument("--audit-log", choices=["on", "off"], default="on", help="this project's audit log (shipped: on)")
    parser.add_argument(
        "--write-ahead",
        choices=["unless_read_only", "always"],
        default="unless_read_only",
        help="AUDIT_WRITE_AHEAD (shipped: unless_read_only; echo is read-only, so 'always' measures a tool that changes things)",
    )
    parser.add_argument("--only", default="http,sse,streams", help="comma separated: http, sse, streams")
    parser.add_argument(
        "--rounds",
        type=int,
        default=1,
        help="measure everything this many times; the table shows the median ratio of the rounds and their range",
    )
    args = parser.parse_args()
    if not 1 <= args.slices <= args.seconds:
        parser.error(f"--slices must be between 1 and --seconds ({args.seconds}): each turn lasts a whole second or more")
    for tool in ("wrk", "taskset"):
        if shutil.which(tool) is None:
            raise SystemExit(f"{tool} is needed (Debian: apt-get install {'wrk' if tool == 'wrk' else 'util-linux'})")
    if len(os.sched_getaffinity(0)) < 2:
        raise SystemExit("two CPUs are needed: the server runs on one, the load generators on the other")
    # This process (the SSE client) and wrk on CPU 1; each server is moved to CPU 0 once started.
    os.sched_setaffinity(0, {int(CLIENT_CPU)})
    os.environ["BENCH_AUDIT_LOG"] = "1" if args.audit_log == "on" else "0"
    os.environ["BENCH_WRITE_AHEAD"] = args.write_ahead
    with tempfile.TemporaryDirectory(prefix="bench-vs-sdk-") as tmp, database(args.database, Path(tmp)) as env:
        bench = Bench(args, Path(tmp), env)
        print(
            f"== this project (mcp_app {version('mcp_app')}, Django {version('django')}, {args.database}, audit log "
            f"{args.audit_log}, written ahead: {args.write_ahead}) vs the "
            f"official SDK (mcp {version('mcp')}); uvicorn {version('uvicorn')}, daphne {version('daphne')}; servers "
            f"on CPU {SERVER_CPU}, load on CPU {CLIENT_CPU}; {args.connections} connections, {args.seconds} s per load",
            flush=True,
        )
        parts = set(args.only.split(","))
        rounds = compare(bench, parts, max(args.rounds, 1))
        rows = rounds[0] if len(rounds) == 1 else medians(rounds)
        if "streams" in parts:
            rows += stream_rows(bench)
    if len(rounds) > 1:
        print(f"\n{len(rounds)} rounds: figures are medians; the ratio is the median of the rounds' ratios (lowest-highest)")
    print(f"\n| {args.database} | this project | SDK / bare app | ratio | target (issue 14) |\n|---|---:|---:|---:|---|")
    for row in rows:
        print(row.line())


if __name__ == "__main__":
    main()
