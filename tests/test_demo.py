"""The demo site: its home page, its admin and its data command."""

from __future__ import annotations

import pytest
from django.core.management import call_command
from django.test import override_settings

pytestmark = pytest.mark.django_db


@override_settings(ROOT_URLCONF="mcpsite.urls")
def test_home_page_lists_the_tools(client) -> None:
    page = client.get("/")
    assert page.status_code == 200
    assert b"uppercase_text" in page.content
    assert b"http://testserver/mcp" in page.content


@override_settings(ROOT_URLCONF="mcpsite.urls", DEBUG=True)
def test_load_demo_data_is_idempotent_and_lets_the_admin_in(client) -> None:
    call_command("load_demo_data")
    call_command("load_demo_data")
    assert client.login(username="admin", password="mcp-demo")
    sessions = client.get("/admin/mcp_app/session/")
    assert sessions.status_code == 200


def test_load_demo_data_refuses_without_debug() -> None:
    from django.core.management.base import CommandError

    with pytest.raises(CommandError, match="DEBUG"):
        call_command("load_demo_data")
