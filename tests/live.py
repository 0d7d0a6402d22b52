"""Real daphne processes on 127.0.0.1 for wire tests."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

REPO = Path(__file__).resolve().parent.parent


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_for_port(port: int, process: subprocess.Popen, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"daphne exited with {process.returncode} before listening")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.1)
    raise TimeoutError(f"daphne did not listen on port {port} within {timeout}s")


@dataclass
class LiveServer:
    """A daphne process serving ``asgi_app`` with ``settings``; ``url`` is its base URL."""

    port: int
    process: subprocess.Popen
    log_path: Path

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def mcp_url(self) -> str:
        return f"{self.url}/mcp"

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def assert_no_traceback(self) -> None:
        """Fail, showing the first traceback, if the server logged one: bad input never crashes a handler."""
        log = self.log()
        at = log.find("Traceback")
        assert at < 0, f"the server logged a traceback:\n{log[max(0, at - 300) : at + 4000]}"

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(5)


def migrate(env: dict[str, str]) -> None:
    subprocess.run([sys.executable, "manage.py", "migrate", "-v0"], cwd=REPO, env=env, check=True)


def start_daphne(
    workdir: Path,
    *,
    settings: str = "tests.settings",
    db_path: Path | None = None,
    extra_env: dict[str, str] | None = None,
    run_migrations: bool = True,
    server: str = "daphne",
    app: str = "tests.conformance.asgi:application",
) -> LiveServer:
    """Migrate a SQLite database in ``workdir`` and start daphne (or uvicorn) on a free port."""
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": settings,
        "PYTHONUNBUFFERED": "1",
        "MCP_TEST_DB": str(db_path or workdir / "db.sqlite3"),
        **(extra_env or {}),
    }
    if run_migrations:
        migrate(env)
    port = free_port()
    log_path = workdir / f"daphne-{port}.log"
    log = open(log_path, "wb")  # noqa: SIM115 - closed with the process
    command = {
        "daphne": [sys.executable, "-m", "daphne", "-b", "127.0.0.1", "-p", str(port), app],
        "uvicorn": [sys.executable, "-m", "uvicorn", "--host", "127.0.0.1", "--port", str(port), "--no-access-log", app],
    }[server]
    process = subprocess.Popen(command, cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT)
    try:
        wait_for_port(port, process)
    except Exception:
        process.kill()
        raise RuntimeError(f"{server} failed to start:\n{log_path.read_text(errors='replace')}") from None
    return LiveServer(port, process, log_path)


def shell(settings: str, env: dict[str, str], code: str) -> str:
    """Run ``code`` in ``manage.py shell`` (another process, as the admin or a cron job would be) and
    return the last line it printed."""
    done = subprocess.run(
        [sys.executable, "manage.py", "shell", "-c", code],
        cwd=REPO,
        check=True,
        timeout=120,
        capture_output=True,
        text=True,
        env={**os.environ, "DJANGO_SETTINGS_MODULE": settings, **env},
    )
    lines = done.stdout.strip().splitlines()
    return lines[-1] if lines else ""


# -- Streamable HTTP sessions on a live server ----------------------------------------------------------------
LATEST = "2025-11-25"
#: What every POST to /mcp carries.
HEADERS = {"content-type": "application/json", "accept": "application/json, text/event-stream"}


def bearer(token: str) -> dict[str, str]:
    """The Authorization header for an mcp_app token."""
    return {"authorization": f"Bearer {token}"}


def initialize_message(version: str = LATEST, *, client: str = "tests") -> dict[str, Any]:
    """An ``initialize`` request asking for ``version``."""
    return {
        "jsonrpc": "2.0",
        "id": 1,
        "method": "initialize",
        "params": {"protocolVersion": version, "capabilities": {}, "clientInfo": {"name": client, "version": "1"}},
    }


def open_session(http: httpx.Client, url: str, token: str | None = None, *, version: str = LATEST) -> dict[str, str]:
    """Initialize a Streamable HTTP session at ``url`` (and send notifications/initialized); returns the
    headers its requests carry: the POST headers, the credentials, the session id and the version."""
    credentials = bearer(token) if token is not None else {}
    answer = http.post(url, json=initialize_message(version), headers={**HEADERS, **credentials})
    assert answer.status_code == 200, answer.text
    headers = {**HEADERS, **credentials, "mcp-session-id": answer.headers["mcp-session-id"], "mcp-protocol-version": version}
    initialized = http.post(url, json={"jsonrpc": "2.0", "method": "notifications/initialized"}, headers=headers)
    assert initialized.status_code == 202, initialized.text
    return headers
