"""The process-wide objects (mcp_app.runtime) follow the settings they were built from, and the model signals
(mcp_app.notifications) send each kind of message once per transaction, after it commits."""

from __future__ import annotations

import json
import os
import subprocess
import sys
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


FREEZE_PROBE = """
import gc, json, django
django.setup()
from mcp_app import runtime
before = gc.get_freeze_count()
runtime.get_server()
first = gc.get_freeze_count()
runtime.reset()
runtime.get_server()  # a rebuilt server (settings changed) does not freeze again
print(json.dumps([before, first, gc.get_freeze_count(), runtime.freeze_long_lived_objects()]))
"""


@pytest.mark.parametrize("enabled", [True, False], ids=["default", "GC_FREEZE False"])
def test_the_first_server_build_freezes_the_objects_alive_once(enabled: bool, tmp_path: Any) -> None:
    # A fresh interpreter: the suite's own process has long since built its server.
    (tmp_path / "freeze_settings.py").write_text(
        f"from tests.settings import *  # noqa\nMCP_APP = {{**MCP_APP, 'GC_FREEZE': {enabled}}}\n"
    )
    env = {**os.environ, "DJANGO_SETTINGS_MODULE": "freeze_settings", "PYTHONPATH": os.pathsep.join([str(tmp_path), os.getcwd()])}
    done = subprocess.run([sys.executable, "-c", FREEZE_PROBE], env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    before, first, after, again = json.loads(done.stdout.strip().splitlines()[-1])
    assert before == 0 and again is False
    if enabled:
        assert first > 10_000 and after == first  # Django, the apps and the server: tens of thousands of objects
    else:
        assert first == after == 0
