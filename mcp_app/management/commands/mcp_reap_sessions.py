"""``manage.py mcp_reap_sessions``: end sessions idle for longer than ``SESSION_IDLE_TIMEOUT`` (run from cron)."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand

from mcp_app.runtime import reap_idle_sessions


class Command(BaseCommand):
    help = "End MCP sessions without a message for MCP_APP['SESSION_IDLE_TIMEOUT'] seconds, closing their streams."

    def handle(self, *args: Any, **options: Any) -> None:
        self.stdout.write(f"Ended {reap_idle_sessions()} idle session(s).")
