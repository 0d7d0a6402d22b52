"""Fixtures of the browser tests: one live daphne (the admin and /mcp on the same server, so that what the
browser does is what an MCP client then sees), Debian's Chromium driven by Playwright, and a signed-in page.

Chromium is the system's (``apt-get install chromium``: /usr/bin/chromium, or ``MCP_TEST_CHROMIUM``);
Playwright never downloads a browser here.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Awaitable, Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, TypeVar

import pytest
from playwright.sync_api import Browser, BrowserContext, Page, sync_playwright

from tests.live import LiveServer, shell, start_daphne

CHROMIUM = os.environ.get("MCP_TEST_CHROMIUM", "/usr/bin/chromium")
SETTINGS = "tests.browser.settings"
#: The screen the admin pages must fit without scrolling sideways: the commonest laptop screen.
VIEWPORT = {"width": 1366, "height": 768}
ADMIN = ("admin", "browser-pw")
T = TypeVar("T")


def run_async(make: Callable[[], Awaitable[T]]) -> T:
    """Run a coroutine (an SDK client's session) to its end from a synchronous test: in a thread of its own,
    as Playwright's synchronous API holds an event loop of its own in this one."""
    with ThreadPoolExecutor(1) as pool:
        return pool.submit(lambda: asyncio.run(make())).result(timeout=120)  # type: ignore[arg-type]


# Module scope, not session: the browser tests are one module, and Playwright's synchronous API holds a
# running event loop in the main thread while it is open, which would break every later asyncio test.
@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    """The site on daphne, with a superuser ``admin`` and a plain user ``reader`` in its database."""
    workdir = tmp_path_factory.mktemp("browser")
    db = workdir / "db.sqlite3"
    server = start_daphne(workdir, settings=SETTINGS, db_path=db, app="tests.browser.asgi:application")
    server.db = db  # type: ignore[attr-defined]
    shell(
        SETTINGS,
        {"MCP_TEST_DB": str(db)},
        "from django.contrib.auth.models import User; "
        f"User.objects.create_superuser({ADMIN[0]!r}, 'admin@example.com', {ADMIN[1]!r}); "
        "User.objects.create_user('reader', 'reader@example.com', 'reader-pw'); print('ok')",
    )
    yield server
    server.stop()
    server.assert_no_traceback()


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=CHROMIUM)
        yield launched
        launched.close()


@pytest.fixture
def context(browser: Browser) -> Iterator[BrowserContext]:
    ctx = browser.new_context(viewport=VIEWPORT)  # type: ignore[arg-type]
    yield ctx
    ctx.close()


@pytest.fixture
def page(context: BrowserContext, live: LiveServer) -> Page:
    """A page signed in to the admin as the superuser, through the login form."""
    page = context.new_page()
    page.goto(f"{live.url}/admin/login/?next=/admin/")
    page.fill("#id_username", ADMIN[0])
    page.fill("#id_password", ADMIN[1])
    page.click("input[type=submit]")
    page.wait_for_url(f"{live.url}/admin/")
    return page


@pytest.fixture
def screenshots(tmp_path: Path) -> Path:
    """Where the tests save their screenshots: ``MCP_TEST_SCREENSHOTS`` (to refresh docs/screenshots by
    hand), else a temporary directory."""
    target = Path(os.environ.get("MCP_TEST_SCREENSHOTS") or tmp_path)
    target.mkdir(parents=True, exist_ok=True)
    return target


def server_db(live: LiveServer) -> dict[str, Any]:
    """The environment a ``manage.py shell`` needs to reach the live server's database."""
    return {"MCP_TEST_DB": str(live.db)}  # type: ignore[attr-defined]
