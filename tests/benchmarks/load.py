"""Shared by the benchmarks: wrk runs, a process's memory, CPU pinning, and the ``echo`` tool's calls.

Nothing here imports Django or mcp_app: the benchmarks drive servers from outside, over HTTP, as clients do.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


def rss_kb(pid: int) -> int:
    """Resident memory of process ``pid`` in KiB (0 if it is gone)."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except FileNotFoundError:
        return 0
    for line in status.splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def cpu_seconds(pid: int) -> float:
    """CPU time process ``pid`` has used so far, all its threads, user and system (0.0 if it is gone)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except FileNotFoundError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")  # utime, stime (fields 14, 15)


def pin(pid: int, cpus: str) -> None:
    """Pin every thread of ``pid`` to ``cpus`` (a taskset list such as "0"); threads it starts later inherit it."""
    subprocess.run(["taskset", "-a", "-p", "-c", cpus, str(pid)], check=True, capture_output=True)


def echo_call(
    request_id: int = 1, text: str = "hello", *, meta: dict[str, Any] | None = None, tool: str = "echo"
) -> dict[str, Any]:
    """A ``tools/call`` of the ``echo`` tool (``meta``: the request's ``params._meta``, for 2026-07-28; ``tool``:
    another tool of the same signature, such as ``echo_in_thread``)."""
    params: dict[str, Any] = {"name": tool, "arguments": {"text": text}}
    if meta is not None:
        params["_meta"] = meta
    return {"jsonrpc": "2.0", "id": request_id, "method": "tools/call", "params": params}


#: wrk script lines printing the first non-2xx answers of each thread ("FAILED <status> <body>").
FAILURES_LUA = """
shown = 0
response = function(status, headers, body)
  if status >= 300 and shown < 3 then
    shown = shown + 1
    io.write("FAILED " .. status .. " " .. string.gsub(string.sub(body, 1, 200), "\\n", " ") .. "\\n")
  end
end
"""


@dataclass
class WrkResult:
    """One wrk run: requests per second, latency percentiles as wrk prints them, and the non-2xx count."""

    rps: float
    requests: int
    p50: str
    p99: str
    non2xx: int
    errors: int
    failures: list[str] = field(default_factory=list)
    #: The server's CPU use during the run, as a share of one core (set by the caller that knows the server).
    server_cpu: float | None = None

    @property
    def ok_rps(self) -> float:
        """Requests per second answered 2xx (wrk's rate counts every answer)."""
        return self.rps * (self.requests - self.non2xx) / self.requests if self.requests else 0.0

    def row(self) -> str:
        """The figures as one line of the printed table."""
        bad = f"   non-2xx {self.non2xx} (2xx: {self.ok_rps:.0f} req/s)" if self.non2xx else ""
        bad += f"   socket errors {self.errors}" if self.errors else ""
        cpu = f"   server CPU {self.server_cpu:4.0%}" if self.server_cpu is not None else ""
        return f"{self.rps:9.0f} req/s   p50 {self.p50:>8}   p99 {self.p99:>8}{cpu}{bad}"


#: wrk's latency units, in milliseconds.
_UNITS_MS = {"us": 0.001, "ms": 1.0, "s": 1000.0, "m": 60_000.0, "h": 3_600_000.0}


def latency_ms(text: str) -> float:
    """A latency as wrk prints it ("970.00us", "12.43ms", "1.02s"), in milliseconds."""
    match = re.fullmatch(r"([\d.]+)([a-z]+)", text)
    if match is None or match.group(2) not in _UNITS_MS:
        raise ValueError(f"not a wrk latency: {text!r}")
    return float(match.group(1)) * _UNITS_MS[match.group(2)]


def merge(slices: list[WrkResult]) -> WrkResult:
    """The runs of one load taken in turns with others (slices of one measurement) as one result.

    The rate is every slice's requests over their summed time, and the server's CPU use is weighted by each
    slice's time. A latency percentile cannot be summed: each is the median of the slices' own (p50 and p99
    apart), which a single slow slice does not move.
    """
    if not slices:
        raise ValueError("no slices to merge")
    seconds = [run.requests / run.rps if run.rps else 0.0 for run in slices]
    total = sum(seconds)
    requests = sum(run.requests for run in slices)
    cpu = [(run.server_cpu, took) for run, took in zip(slices, seconds, strict=True) if run.server_cpu is not None]

    def middle(values: list[str]) -> str:
        return sorted(values, key=latency_ms)[(len(values) - 1) // 2]

    return WrkResult(
        rps=requests / total if total else 0.0,
        requests=requests,
        p50=middle([run.p50 for run in slices]),
        p99=middle([run.p99 for run in slices]),
        non2xx=sum(run.non2xx for run in slices),
        errors=sum(run.errors for run in slices),
        failures=[failure for run in slices for failure in run.failures],
        server_cpu=sum(share * took for share, took in cpu) / sum(took for _, took in cpu) if cpu else None,
    )


def wrk(
    url: str,
    *,
    seconds: float,
    connections: int,
    workdir: Path,
    body: dict[str, Any] | None = None,
    headers: dict[str, str] | None = None,
    threads: int = 2,
    cpus: str | None = None,
    show_failures: bool = False,
) -> WrkResult:
    """Run wrk against ``url``: a POST of ``body`` (JSON) with ``headers``, or a plain GET when ``body`` is None.

    ``cpus``: run wrk under ``taskset -c cpus``, away from a server pinned elsewhere. wrk's own counts of
    non-2xx answers and socket errors are returned with the rate: a run that errs measures nothing.
    ``show_failures``: also collect the status and the start of the body of the first non-2xx answers
    (:attr:`WrkResult.failures`); this hands every answer to Lua, which slows wrk: for diagnosis, not figures.
    """
    command = ["wrk", f"-t{threads}", f"-c{max(connections, threads)}", f"-d{seconds}s", "--latency"]
    if cpus is not None:
        command = ["taskset", "-c", cpus, *command]
    if body is not None or headers:
        lines = []
        if body is not None:
            lines += ['wrk.method = "POST"', f"wrk.body = {json.dumps(json.dumps(body))}"]
        lines += [f"wrk.headers[{json.dumps(k)}] = {json.dumps(v)}" for k, v in (headers or {}).items()]
        if show_failures:
            lines += [FAILURES_LUA]
        script = workdir / "wrk.lua"
        script.write_text("\n".join(lines) + "\n")
        command += ["-s", str(script)]
    out = subprocess.run([*command, url], capture_output=True, text=True, check=True).stdout
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))
    p50 = re.search(r"50%\s+([\d.]+\w+)", out).group(1)
    p99 = re.search(r"99%\s+([\d.]+\w+)", out).group(1)
    non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    errors = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out)
    failures = [line.removeprefix("FAILED ") for line in out.splitlines() if line.startswith("FAILED ")]
    return WrkResult(
        failures=failures,
        rps=rps,
        requests=int(re.search(r"(\d+) requests in", out).group(1)),
        p50=p50,
        p99=p99,
        non2xx=int(non2xx.group(1)) if non2xx else 0,
        errors=sum(int(n) for n in errors.groups()) if errors else 0,
    )
