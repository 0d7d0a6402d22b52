"""The process-wide objects (mcp_app.runtime) follow the settings they were built from, and the model signals
(mcp_app.notifications) send each kind of message once per transaction, after it commits."""

from __future__ import annotations

from typing import Any

import pytest
from django.conf import settings
from django.db import transaction
from django.test import override_settings

from mcp_app import notifications
from mcp_app.models import Tool
from mcp_app.runtime import get_server


def test_a_settings_change_rebuilds_the_server() -> None:
    before = get_server()
    assert get_server() is before  # built once, then kept
    with override_settings(MCP_APP={**settings.MCP_APP, "SERVER_NAME": "renamed"}):
        during = get_server()
        assert during is not before and during.dispatcher.server_info["name"] == "renamed"
    after = get_server()
    assert after is not during and after.dispatcher.server_info["name"] == before.dispatcher.server_info["name"]


@pytest.mark.django_db(transaction=True)
def test_catalog_changes_are_sent_once_per_transaction_after_it_commits(monkeypatch: Any) -> None:
    sent: list[str] = []

    async def broadcast(message: dict[str, Any]) -> None:
        sent.append(message["method"])

    monkeypatch.setattr("mcp_app.transports.events.broadcast", broadcast)
    with transaction.atomic():
        Tool.objects.create(name="first")
        Tool.objects.create(name="second")
        Tool.objects.filter(name="first").get().delete()
        assert sent == []  # nothing before the commit
    assert sent == [notifications.TOOLS_CHANGED]  # three changes, one notification
    try:
        with transaction.atomic():
            Tool.objects.create(name="rolled back")
            raise RuntimeError
    except RuntimeError:
        pass
    assert sent == [notifications.TOOLS_CHANGED]  # rolled back: nobody is told
    Tool.objects.filter(name="second").delete()  # outside a transaction: at once
    assert sent == [notifications.TOOLS_CHANGED] * 2
