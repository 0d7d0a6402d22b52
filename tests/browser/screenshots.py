"""Refresh the README's screenshots (docs/screenshots/): ``.venv/bin/python -m tests.browser.screenshots``.

Not a test: it starts the browser tests' live server, fills its audit log with a day of made-up calls (so the
dashboard has something to show), makes a few real calls with the official SDK client, and saves the dashboard
and the "connect a client" page at 1366 px wide, squeezed with ``pngquant`` when it is installed.
"""

from __future__ import annotations

import random
import shutil
import subprocess
import sys
import tempfile
from datetime import timedelta
from pathlib import Path

from playwright.sync_api import sync_playwright

from tests.browser.conftest import ADMIN, CHROMIUM, SETTINGS, VIEWPORT, run_async
from tests.browser.test_admin_pages import make_token, sdk_calls
from tests.live import REPO, shell, start_daphne

TOOLS = {"search_books": 0.35, "library_book_list": 0.25, "uppercase_text": 0.2, "get_loan": 0.12, "renew_loan": 0.08}
CLIENTS = [("streamable_http", "claude-ai", 3), ("streamable_http", "Cursor", 2), ("sse", "mcp-inspector", 1)]


def seed() -> None:
    """A day of calls in this database's audit log, and a few open sessions (run inside ``manage.py shell``)."""
    from django.contrib.auth.models import User
    from django.utils import timezone

    from mcp_app.models import Session, ToolCall

    rng = random.Random(15)
    now = timezone.now()
    admin = User.objects.get(username=ADMIN[0])
    rows = []
    for minute in range(24 * 60):
        hour = (now - timedelta(minutes=minute)).hour
        busy = 0.3 + 0.7 * (8 <= hour <= 19)  # office hours
        for _ in range(rng.choices([0, 1, 2, 3], [1 - busy, busy * 0.5, busy * 0.3, busy * 0.2])[0]):
            tool = rng.choices(list(TOOLS), list(TOOLS.values()))[0]
            outcome = rng.choices(["ok", "tool_error", "failed", "refused"], [0.93, 0.04, 0.02, 0.01])[0]
            rows.append(
                ToolCall(
                    tool=tool,
                    outcome=outcome,
                    duration_ms=round(rng.lognormvariate(2.3, 0.6), 2) if outcome != "refused" else 0,
                    created=now - timedelta(minutes=minute, seconds=rng.randrange(60)),
                    via=rng.choice(["streamable_http", "streamable_http", "sse", "modern"]),
                    user=admin,
                    error_message={"tool_error": "No loan with that id.", "failed": "Invalid params: limit must be <= 100"}.get(
                        outcome, "Unknown tool" if outcome == "refused" else ""
                    ),
                )
            )
    ToolCall.objects.bulk_create(rows, batch_size=500)
    for transport, client, count in CLIENTS:
        for i in range(count):
            Session.objects.create(
                id=f"{client}-{i}", transport=transport, client_name=client, protocol_version="2025-11-25", user=admin
            )
    print(len(rows))


def main(target: Path) -> None:
    target.mkdir(parents=True, exist_ok=True)
    workdir = Path(tempfile.mkdtemp())
    db = workdir / "db.sqlite3"
    server = start_daphne(workdir, settings=SETTINGS, db_path=db, app="tests.browser.asgi:application")
    try:
        env = {"MCP_TEST_DB": str(db)}
        shell(
            SETTINGS,
            env,
            "from django.contrib.auth.models import User; "
            f"User.objects.create_superuser({ADMIN[0]!r}, 'admin@example.com', {ADMIN[1]!r}); "
            "User.objects.create_user('reader'); "
            "from tests.browser.screenshots import seed; seed()",
        )
        server.db = db  # type: ignore[attr-defined]
        token = make_token(server)
        run_async(lambda: sdk_calls(server.mcp_url, f"Bearer {token}", [("uppercase_text", {"text": "hi"})]))
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path=CHROMIUM)
            page = browser.new_page(viewport=VIEWPORT)  # type: ignore[arg-type]
            page.goto(f"{server.url}/admin/login/?next=/admin/")
            page.fill("#id_username", ADMIN[0])
            page.fill("#id_password", ADMIN[1])
            page.click("input[type=submit]")
            page.wait_for_url(f"{server.url}/admin/")
            page.goto(f"{server.url}/admin/mcp_app/toolcall/dashboard/?window=day")
            page.wait_for_function("document.querySelector('#mcp-health .figure').textContent !== '…'")
            page.screenshot(path=str(target / "dashboard.png"), full_page=True)
            page.goto(f"{server.url}/admin/mcp_app/token/connect/")
            page.fill("#id_name", "Claude Desktop on my laptop")
            page.click("input[type=submit][value='Create token']")
            page.screenshot(path=str(target / "connect.png"))
            browser.close()
    finally:
        server.stop()
        shutil.rmtree(workdir, ignore_errors=True)
    if shutil.which("pngquant"):
        for name in ("dashboard.png", "connect.png"):
            subprocess.run(["pngquant", "--force", "--skip-if-larger", "--output", str(target / name), "64", str(target / name)])


if __name__ == "__main__":
    main(Path(sys.argv[1]) if len(sys.argv) > 1 else REPO / "docs" / "screenshots")
