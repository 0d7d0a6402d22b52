"""``manage.py mcp_token <username>``: create a bearer token for an MCP client and print it once."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.utils import timezone

from mcp_app.models import Token


class Command(BaseCommand):
    help = "Create an MCP bearer token for a user and print it (only its hash is stored)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("username")
        parser.add_argument("--name", default="created with mcp_token", help="what the token is for")
        parser.add_argument("--scopes", default="mcp", help="space separated scopes (default: mcp)")
        parser.add_argument("--days", type=int, default=None, help="expire after this many days (default: never)")

    def handle(self, *args: Any, username: str, name: str, scopes: str, days: int | None, **options: Any) -> None:
        user = get_user_model().objects.filter(**{get_user_model().USERNAME_FIELD: username}).first()
        if user is None:
            raise CommandError(f"No user {username!r}.")
        if not user.is_active:
            raise CommandError(f"User {username!r} is inactive; a token for them would be refused.")
        if days is not None and days < 1:
            raise CommandError("--days must be at least 1.")
        expires = timezone.now() + timedelta(days=days) if days else None
        token, key = Token.create_for(user, name=name, scopes=scopes, expires=expires)
        self.stderr.write(f"Token {token.key_prefix}… for {username} ({scopes}); it is shown once:")
        self.stdout.write(key)
