"""``manage.py mcp_stdio --user USERNAME`` (or ``--token TOKEN``): serve MCP over stdin/stdout for a local
client (Claude Desktop, Cursor, VS Code, the Inspector), as that user.

The same tools, resources and prompts as ``/mcp``, through the same dispatcher. stdout carries JSON-RPC
messages and nothing else: the process's file descriptor 1 is pointed at stderr before serving (so a stray
``print`` in a tool, or a library writing to stdout, cannot corrupt the stream), and the messages go to a
private copy of the original stdout. Logs go to stderr. Exit status: 0 at end of input, 2 when the user or
token is refused (the reason on stderr).
"""

from __future__ import annotations

import asyncio
import os
import sys
from typing import Any, BinaryIO

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError, CommandParser

from mcp_app.auth import AuthenticationFailed, Principal, authenticate_sync
from mcp_app.transports.stdio import serve

#: The exit status of a refused user or token (``CommandError``'s default, 1, means any failure).
REFUSED = 2


def _principal_for_user(username: str) -> Principal:
    model = get_user_model()
    user = model.objects.filter(**{model.USERNAME_FIELD: username}).first()
    if user is None:
        raise CommandError(f"No user {username!r}: create it (manage.py createsuperuser) or pick another.", returncode=REFUSED)
    if not user.is_active:
        raise CommandError(f"User {username!r} is inactive; the server would refuse them.", returncode=REFUSED)
    # A local process run by someone who can run manage.py: the user's own permissions, no scope limit
    # (as when signed in to the site).
    return Principal(key=f"user:{user.pk}", user=user, kind="session")


def _principal_for_token(token: str) -> Principal:
    # The token is checked exactly as on /mcp (expiry, revocation, scopes, REQUIRED_SCOPES).
    scope = {"type": "stdio", "method": "POST", "headers": [(b"authorization", f"Bearer {token}".encode())]}
    try:
        return authenticate_sync(scope)
    except AuthenticationFailed as exc:
        raise CommandError(f"The token is refused: {exc}", returncode=REFUSED) from None


class Command(BaseCommand):
    help = "Serve MCP over stdio (newline-delimited JSON-RPC on stdin/stdout) as a user, for local clients."

    def add_arguments(self, parser: CommandParser) -> None:
        who = parser.add_mutually_exclusive_group(required=True)
        who.add_argument("--user", help="serve as this user (their permissions decide what is listed)")
        who.add_argument("--token", help="serve as the owner of this mcp_app token, limited to its scopes")

    def handle(self, *args: Any, user: str | None, token: str | None, **options: Any) -> None:
        # Resolved before the event loop starts: the ORM's synchronous API is refused inside one.
        principal = _principal_for_user(user) if user is not None else _principal_for_token(token or "")
        out = self._claim_stdout()
        stdin = sys.stdin.buffer

        async def read_line() -> bytes:
            # A thread, not the event loop's pipe reader: stdin may be a file or a terminal as well as a pipe.
            return await asyncio.to_thread(stdin.readline)

        async def write_line(line: bytes) -> None:
            def write() -> None:
                out.write(line)
                out.flush()

            await asyncio.to_thread(write)

        try:
            asyncio.run(serve(principal, read_line, write_line))
        except KeyboardInterrupt:
            pass
        except BrokenPipeError:  # the client went away mid-answer: nothing left to serve
            pass
        out.close()

    @staticmethod
    def _claim_stdout() -> BinaryIO:
        """A private copy of stdout for the messages; file descriptor 1 (and ``sys.stdout``) become stderr."""
        sys.stdout.flush()
        out = os.fdopen(os.dup(1), "wb")
        os.dup2(2, 1)
        sys.stdout = sys.stderr
        return out
