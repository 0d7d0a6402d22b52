"""``manage.py purge_unused_clients [--hours N] [--dry-run]``: delete dynamically registered OAuth clients
that were never used (no user approved them, no token was issued to them) and are older than N hours
(default ``DEMO_UNUSED_CLIENT_HOURS``, 24). Clients created in the admin are never touched. Run it from
cron; registration also purges them as it goes."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from mcpsite.demo.oauth import purge_unused_registrations, unused_client_age, unused_registrations


class Command(BaseCommand):
    help = "Delete dynamically registered OAuth clients that were never used and are older than --hours."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--hours",
            type=float,
            default=None,
            help="Age in hours past which an unused registration is deleted (default: DEMO_UNUSED_CLIENT_HOURS, 24).",
        )
        parser.add_argument("--dry-run", action="store_true", help="Count what would be deleted; delete nothing.")

    def handle(self, *args: Any, hours: float | None = None, dry_run: bool = False, **options: Any) -> None:
        if hours is not None and hours < 0:
            raise CommandError("--hours must be 0 or more.")
        age = timedelta(hours=hours) if hours is not None else unused_client_age()
        if dry_run:
            count = unused_registrations(age).count()
            self.stdout.write(f"{count} unused client registration(s) older than {age} would be deleted.")
            return
        count = purge_unused_registrations(age)
        self.stdout.write(f"Deleted {count} unused client registration(s) older than {age}.")
