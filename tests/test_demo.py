"""The demo site: its home page, its admin and its data command."""

from __future__ import annotations

import pytest
from django.contrib.auth.models import User
from django.core.management import call_command
from django.test import override_settings

pytestmark = pytest.mark.django_db


@override_settings(ROOT_URLCONF="mcpsite.urls")
def test_home_page_lists_the_tools(client) -> None:
    page = client.get("/")
    assert page.status_code == 200
    assert b"uppercase_text" in page.content
    assert b"http://testserver/mcp" in page.content
    assert b"django://library/book/{pk}" in page.content and b"Bearer mcp_demo-token-for-local-use-only" in page.content


@override_settings(ROOT_URLCONF="mcpsite.urls", DEBUG=True)
def test_load_demo_data_is_idempotent_and_lets_the_admin_in(client) -> None:
    from mcpsite.library import demo_data
    from mcpsite.library.models import Author, Book, Loan, Member

    call_command("load_demo_data")
    call_command("load_demo_data")
    assert client.login(username="admin", password="mcp-demo")
    sessions = client.get("/admin/mcp_app/session/")
    assert sessions.status_code == 200
    # The library: thousands of related rows, once, and its two demo users.
    counts = (Author.objects.count(), Book.objects.count(), Member.objects.count(), Loan.objects.count())
    assert counts == (demo_data.AUTHORS, demo_data.BOOKS, demo_data.MEMBERS, demo_data.LOANS)
    assert Book.objects.values("isbn").distinct().count() == demo_data.BOOKS
    assert demo_data.isbn13(30640615) == "9780306406157"  # a published ISBN-13, check digit included
    librarian = User.objects.get(username=demo_data.LIBRARIAN)
    assert librarian.has_perm("library.view_member") and librarian.has_perm("library.view_loan")
    from mcp_app.auth import authenticate_sync
    from mcpsite.demo.management.commands.load_demo_data import DEMO_TOKEN

    principal = authenticate_sync({"type": "http", "headers": [(b"authorization", f"Bearer {DEMO_TOKEN}".encode())]})
    assert principal.user.username == "admin"  # the README walkthrough's token
    reader = User.objects.get(username=demo_data.READER)
    assert not reader.has_perm("library.view_loan") and Member.objects.filter(user=reader).count() == 1


def test_load_demo_data_refuses_without_debug() -> None:
    from django.core.management.base import CommandError

    with pytest.raises(CommandError, match="DEBUG"):
        call_command("load_demo_data")


@pytest.mark.parametrize("redis", [False, True], ids=["in-memory layer", "MCPSITE_REDIS_URL"])
def test_the_demo_settings_pass_the_projects_own_checks(tmp_path, redis: bool) -> None:
    """The demo runs what the README recommends: `manage.py check` reports nothing of mcp_app's, with the
    in-memory layer and with Redis (socket_timeout None and a capacity, as documented)."""
    import os
    import subprocess
    import sys

    from tests.live import REPO

    env = {**os.environ, "DJANGO_SETTINGS_MODULE": "mcpsite.settings", "MCPSITE_SQLITE": str(tmp_path / "db.sqlite3")}
    env.pop("MCPSITE_REDIS_URL", None)
    if redis:
        env["MCPSITE_REDIS_URL"] = "redis://127.0.0.1:6379/0"
    run = subprocess.run([sys.executable, "manage.py", "check"], cwd=REPO, env=env, capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr
    assert "mcp_app." not in run.stdout + run.stderr, run.stdout + run.stderr
