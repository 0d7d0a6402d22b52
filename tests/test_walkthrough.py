"""README's "Adding mcp_app to your site", followed as written on a fresh ``django-admin startproject``.

The section's code blocks are read from README.md, so the README and this test cannot drift: python blocks are
files (their first line names the file, and ``: add at the end`` appends to it), sh blocks are commands run in
the project's directory. The test knows how to run each kind of command the section uses and fails on any
other, so a new step in the README needs a line here. Where it must depart from a reader at a terminal, it
says so: createsuperuser runs with ``--noinput`` (the password from the environment), servers listen on a free
port instead of 8000 (runserver without its autoreloader, so that one PID is the server), and the client
script's URL names that port.

Then, under runserver, daphne and uvicorn in turn: the README's SDK client calls the tool with the token the
README's ``mcp_token`` printed, and the admin's CSS is served.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest

from tests.live import REPO, free_port, wait_for_port

SECTION = "## Adding mcp_app to your site"
PROJECT = "mysite"
README_URL = "http://127.0.0.1:8000/mcp"  # what the README's client script calls
TOKEN_PLACEHOLDER = "paste-the-token-here"
ADMIN_CSS = "/static/admin/css/base.css"


def section_blocks() -> list[tuple[str, str]]:
    """The (language, code) blocks of the section, in order, up to its first subsection."""
    text = (REPO / "README.md").read_text()
    start = text.index(SECTION + "\n")
    end = text.index("\n### ", start)
    section = text[start:end]
    assert f"django-admin startproject {PROJECT}" in section  # the project this test starts from
    return re.findall(r"^```(\w+)\n(.*?)^```$", section, re.S | re.M)


@dataclass
class Walkthrough:
    """What following the section produced: the servers to start and the client command to run."""

    project: Path
    env: dict[str, str]
    token: str | None = None
    servers: list[list[str]] = field(default_factory=list)  # argv, with {port} for the port
    client: tuple[dict[str, str], list[str]] | None = None  # extra environment, argv
    checks_before_asgi: str = ""

    def manage(self, *args: str, extra_env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
        return subprocess.run(
            [sys.executable, "manage.py", *args],
            cwd=self.project,
            env={**self.env, **(extra_env or {})},
            capture_output=True,
            text=True,
            timeout=120,
        )

    def write(self, header: str, code: str) -> None:
        match = re.fullmatch(r"# (\S+?)(?:: (add at the end|replace it))?", header)
        assert match, f"a python block of the section starts with '# <file>', not {header!r}"
        path = self.project / match[1]
        if match[2] == "add at the end":
            path.write_text(path.read_text() + "\n" + code)
            return
        if match[2] == "replace it":
            assert path.exists(), f"the README replaces {match[1]}, which startproject did not write"
            if path.name == "asgi.py":
                # As startproject wrote it, /mcp goes to Django: the check says so (on a real project).
                self.checks_before_asgi = self.run_checked("check").stderr
        path.write_text(code)

    def run_checked(self, *args: str, extra_env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
        done = self.manage(*args, extra_env=extra_env)
        assert done.returncode == 0, f"manage.py {' '.join(args)} failed:\n{done.stdout}\n{done.stderr}"
        return done

    def run_line(self, line: str) -> None:
        words = shlex.split(line)
        if words[:2] == ["pip", "install"]:
            assert words[2] == "mcp_app"  # installed in this venv already
            return
        if words[:2] == ["python", "manage.py"]:
            command = words[2]
            if command == "runserver":
                self.servers.append([sys.executable, "manage.py", *words[2:], "127.0.0.1:{port}", "--noreload"])
            elif command == "createsuperuser":
                self.run_checked(*words[2:], "--noinput", extra_env={"DJANGO_SUPERUSER_PASSWORD": "walk-through-pw"})
            elif command == "mcp_token":
                self.token = self.run_checked(*words[2:]).stdout.strip()
            else:
                self.run_checked(*words[2:])
            return
        if words[0] == "daphne":
            self.servers.append([sys.executable, "-m", "daphne", "-b", "127.0.0.1", "-p", "{port}", *words[1:]])
            return
        if words[0] == "uvicorn":
            self.servers.append([sys.executable, "-m", "uvicorn", "--host", "127.0.0.1", "--port", "{port}", *words[1:]])
            return
        assignments = {}
        while "=" in words[0]:
            name, _, value = words.pop(0).partition("=")
            assignments[name] = value
        if words[0] == "python" and assignments:
            self.client = (assignments, [sys.executable, *words[1:]])
            return
        raise AssertionError(f"the walkthrough test does not know how to run the README's {line!r}")


def follow_the_readme(tmp_path: Path) -> Walkthrough:
    # A terminal of its own: none of the suite's settings, and one worker (WEB_CONCURRENCY would rightly warn).
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DJANGO_", "MCP_TEST", "WEB_CONCURRENCY"))}
    env["PYTHONUNBUFFERED"] = "1"
    subprocess.run([sys.executable, "-m", "django", "startproject", PROJECT], cwd=tmp_path, env=env, check=True)
    walk = Walkthrough(tmp_path / PROJECT, env)
    for language, code in section_blocks():
        if language == "python":
            walk.write(code.splitlines()[0], code)
        elif language == "sh":
            for line in code.splitlines():
                line = line.split(" #")[0].strip()
                if line and not line.startswith("#"):
                    walk.run_line(line)
        else:
            raise AssertionError(f"a {language} block in the section: say here how to follow it")
    return walk


def serve(argv: list[str], project: Path, env: dict[str, str], log: Path) -> tuple[subprocess.Popen, int]:
    port = free_port()
    with open(log, "wb") as out:
        process = subprocess.Popen(
            [a.replace("{port}", str(port)) for a in argv], cwd=project, env=env, stdout=out, stderr=subprocess.STDOUT
        )
    try:
        wait_for_port(port, process)
    except Exception:
        process.kill()
        process.wait(5)
        raise AssertionError(f"{argv} did not start:\n{log.read_text(errors='replace')}") from None
    return process, port


def stop(process: subprocess.Popen) -> None:
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(5)


@pytest.fixture(scope="module")
def walk(tmp_path_factory: pytest.TempPathFactory) -> Walkthrough:
    return follow_the_readme(tmp_path_factory.mktemp("walkthrough"))


def test_the_readme_steps_work_on_a_fresh_project_under_runserver_daphne_and_uvicorn(walk: Walkthrough, tmp_path: Path) -> None:
    assert "mcp_app.W009" in walk.checks_before_asgi  # startproject's asgi.py sends /mcp to Django
    assert walk.token and walk.token.startswith("mcp_")
    assert "System check identified no issues" in walk.run_checked("check").stdout  # no false alarm on the steps
    assert [argv[1:3] for argv in walk.servers] == [["manage.py", "runserver"], ["-m", "daphne"], ["-m", "uvicorn"]]
    assert walk.client is not None
    extra, client_argv = walk.client
    assert extra == {"MCP_TOKEN": TOKEN_PLACEHOLDER}
    script = walk.project / client_argv[1]
    readme_script = script.read_text()
    assert readme_script.count(README_URL) == 1

    for argv in walk.servers:
        log = tmp_path / f"{argv[2]}.log"
        process, port = serve(argv, walk.project, walk.env, log)
        try:
            script.write_text(readme_script.replace(README_URL, f"http://127.0.0.1:{port}/mcp"))
            called = subprocess.run(
                client_argv,
                cwd=walk.project,
                env={**walk.env, "MCP_TOKEN": walk.token},
                capture_output=True,
                text=True,
                timeout=60,
            )
            assert called.returncode == 0, f"{called.stdout}\n{called.stderr}\n{log.read_text(errors='replace')}"
            assert called.stdout.strip() == "Hello, Ada!"
            css = httpx.get(f"http://127.0.0.1:{port}{ADMIN_CSS}", timeout=10)
            assert css.status_code == 200 and css.headers["content-type"].startswith("text/css")
            # Without a token: 401, not Django's HTML 404 (the endpoint is mcp_app's).
            refused = httpx.post(f"http://127.0.0.1:{port}/mcp", json={}, timeout=10)
            assert refused.status_code == 401 and refused.headers["content-type"] == "application/json"
        finally:
            stop(process)
        output = log.read_text(errors="replace")
        assert "Traceback" not in output, output
        if argv[2] == "runserver":
            assert "ASGI/Daphne" in output and "mcp_app.W" not in output, output


def test_runserver_without_daphne_says_so(walk: Walkthrough, tmp_path: Path) -> None:
    """The mistake the README's settings step avoids, made on purpose: runserver warns before it serves."""
    settings = walk.project / PROJECT / "settings.py"
    as_in_the_readme = settings.read_text()
    settings.write_text(as_in_the_readme + '\nINSTALLED_APPS = [a for a in INSTALLED_APPS if a != "daphne"]\n')
    log = tmp_path / "runserver.log"
    try:
        process, _ = serve(
            [sys.executable, "manage.py", "runserver", "127.0.0.1:{port}", "--noreload"], walk.project, walk.env, log
        )
        stop(process)
    finally:
        settings.write_text(as_in_the_readme)
    output = log.read_text(errors="replace")
    assert "mcp_app.W008" in output and '"daphne" first in INSTALLED_APPS' in output, output
    assert "ASGI/Daphne" not in output  # Django's WSGI server, as the warning says


def test_the_remote_client_configs_carry_the_token() -> None:
    """Cursor, VS Code and mcp-remote configs in "Connecting clients" are valid JSON and send Authorization:
    without it they get 401 from any site without OAuth."""
    text = (REPO / "README.md").read_text()
    start = text.index("### Connecting clients\n")
    section = text[start : text.index("#### Local clients over stdio", start)]
    configs = [json.loads(snippet) for snippet in re.findall(r"`(\{.*?\})`", section)]
    servers = [s for config in configs for s in (config.get("mcpServers") or config.get("servers")).values()]
    assert len(servers) == 3  # mcp-remote for Claude Desktop, Cursor, VS Code
    for config in configs:
        for server in (config.get("mcpServers") or config.get("servers")).values():
            if "url" in server:
                assert server["headers"]["Authorization"].startswith("Bearer "), server
            else:
                args = server["args"]
                assert args[0] == "mcp-remote" and args[args.index("--header") + 1] == "Authorization:${AUTH_HEADER}"
                assert server["env"]["AUTH_HEADER"].startswith("Bearer "), server
            if "${input:" in json.dumps(server):  # VS Code: the input it names is declared
                (name,) = re.findall(r"\$\{input:([^}]+)\}", json.dumps(server))
                assert [i["id"] for i in config["inputs"]] == [name] and config["inputs"][0]["password"] is True
