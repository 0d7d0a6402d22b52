"""Delete audit rows (tool calls) older than the retention period."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from django.core.management.base import BaseCommand, CommandError
from django.utils import timezone

from mcp_app.conf import mcp_settings
from mcp_app.models import ToolCall


class Command(BaseCommand):
    help = "Delete MCP tool-call audit rows older than MCP_APP['AUDIT_RETENTION_DAYS'] (or --days)."

    def add_arguments(self, parser: Any) -> None:
        parser.add_argument("--days", type=int, help="Keep this many days instead of the setting.")
        parser.add_argument("--dry-run", action="store_true", help="Count what would be deleted, delete nothing.")

    def handle(self, *args: Any, days: int | None = None, dry_run: bool = False, **options: Any) -> None:
        days = days if days is not None else mcp_settings.AUDIT_RETENTION_DAYS
        if days is None:
            self.stdout.write("AUDIT_RETENTION_DAYS is None: audit rows are kept forever; nothing deleted.")
            return
        if days < 0:
            raise CommandError("--days must be 0 or more.")
        old = ToolCall.objects.filter(created__lt=timezone.now() - timedelta(days=days))
        count = old.count()
        if not dry_run:
            old.delete()
        verb = "Would delete" if dry_run else "Deleted"
        self.stdout.write(self.style.SUCCESS(f"{verb} {count} tool-call row(s) older than {days} day(s)."))
