"""The 2026-07-28 stateless path writes nothing per request beyond the audit log's group.

A modern request has no session: no session row, no ``last_seen`` touch, no subscription or stream event
rows. With a bearer token and the rate limits on (as deployed), one ``tools/call`` may write only its audit
row (an INSERT ahead of the call and an UPDATE with its outcome, both through the audit writer's group
commit). Every statement any thread runs during the call is recorded, through Django's cursor wrapper.
"""

from __future__ import annotations

import re
from typing import Any

import pytest
from django.conf import settings
from django.contrib.auth.models import User
from django.db.backends import utils as db_utils
from django.test import override_settings

from mcp_app import workers
from mcp_app.audit import default_writer
from mcp_app.testing import MCPTestClient

pytestmark = pytest.mark.django_db(transaction=True)  # the audit writer and the ORM's threads have their own connections

MODERN = "2026-07-28"
WRITE = re.compile(r'^\s*(?:INSERT\s+INTO|UPDATE|DELETE\s+FROM|REPLACE\s+INTO)\s+"?(\w+)"?', re.IGNORECASE)


@pytest.fixture
def statements(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The SQL every thread runs through Django's cursors, from when the test starts recording (``[]`` then)."""
    recorded: list[str] = []
    real_execute, real_many = db_utils.CursorWrapper._execute, db_utils.CursorWrapper._executemany

    def execute(self: Any, sql: str, *args: Any) -> Any:
        recorded.append(sql)
        return real_execute(self, sql, *args)

    def executemany(self: Any, sql: str, *args: Any) -> Any:
        recorded.append(sql)
        return real_many(self, sql, *args)

    monkeypatch.setattr(db_utils.CursorWrapper, "_execute", execute)
    monkeypatch.setattr(db_utils.CursorWrapper, "_executemany", executemany)
    # The worker's lease heartbeat writes every few seconds whatever the requests: not per request, and it
    # would make the count depend on timing.
    monkeypatch.setattr(workers.maintenance, "ensure_running", lambda: None)
    return recorded


def written_tables(sql: list[str]) -> list[str]:
    return [match.group(1) for match in map(WRITE.match, sql) if match]


async def test_a_stateless_tools_call_writes_only_its_audit_rows(statements: list[str]) -> None:
    user = await User.objects.acreate(username="stateless")
    # The rate limits on, as deployed; a session's last_seen would be touched on every request (no throttle
    # hiding a per-request write behind a minute's interval).
    limits = {"TOOL_CALL_RATE": (120, 60), "REQUEST_RATE": (600, 60), "SESSION_TOUCH_INTERVAL": 0}
    with override_settings(MCP_APP={**settings.MCP_APP, **limits}):
        async with MCPTestClient(user=user, protocol_version=MODERN) as client:
            assert client.session_id is None
            await client.call_tool("uppercase_text", {"text": "warm"})  # caches: token, catalog, permissions
            assert default_writer.wait_idle(10)
            statements.clear()
            for n in range(3):
                result = await client.call_tool("uppercase_text", {"text": f"call {n}"})
                assert result["content"] == [{"type": "text", "text": f"CALL {n}"}]
            assert default_writer.wait_idle(10)
            done = list(statements)
    tables = written_tables(done)
    assert set(tables) == {"mcp_app_toolcall"}, [s for s in done if WRITE.match(s)]
    # Each call: its row ahead and its outcome (fewer when calls share a group), never more.
    assert len(tables) <= 6, [s for s in done if WRITE.match(s)]
