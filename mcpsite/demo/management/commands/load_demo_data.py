"""Load the demo's data: an admin account, and the library's thousands of rows and its librarian and
reader accounts (idempotent: safe to run again)."""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError

DEMO_USER = "admin"
DEMO_PASSWORD = "mcp-demo"  # the demo runs on 127.0.0.1 with DEBUG on; never on a real site
# A bearer token with a well-known value, for the README's curl walkthrough (DEBUG only, like the password).
DEMO_TOKEN = "mcp_demo-token-for-local-use-only"


class Command(BaseCommand):
    help = "Create the demo's admin account and library data (DEBUG only)."

    def handle(self, *args: Any, **options: Any) -> None:
        if not settings.DEBUG:
            raise CommandError("load_demo_data creates a well-known admin password; it only runs with DEBUG on.")
        User = get_user_model()  # noqa: N806 - Django's idiom
        if not User.objects.filter(username=DEMO_USER).exists():
            User.objects.create_superuser(DEMO_USER, "admin@example.com", DEMO_PASSWORD)
        from mcp_app.models import Token
        from mcpsite.library import demo_data

        if not Token.objects.filter(key_hash=Token.hash(DEMO_TOKEN)).exists():
            Token.create_for(User.objects.get(username=DEMO_USER), name="demo (README walkthrough)", key=DEMO_TOKEN)

        if demo_data.load():
            self.stdout.write(
                f"Library: {demo_data.AUTHORS} authors, {demo_data.BOOKS} books, {demo_data.MEMBERS} members, "
                f"{demo_data.LOANS} loans; users {demo_data.LIBRARIAN!r} and {demo_data.READER!r} "
                f"(password {demo_data.DEMO_PASSWORD!r})."
            )
        self.stdout.write(
            self.style.SUCCESS(
                f"Demo data loaded. Admin: http://127.0.0.1:8000/admin/ (user {DEMO_USER!r}, password {DEMO_PASSWORD!r}); "
                f"MCP endpoint: http://127.0.0.1:8000/mcp (Authorization: Bearer {DEMO_TOKEN})"
            )
        )
