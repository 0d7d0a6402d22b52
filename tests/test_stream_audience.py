"""Which exposures a stream's caller may read (mcp_app.notifications.StreamAudience), in-process: the set
that decides who gets a list_changed about rows is worked out once per stream and kept until the catalog
or the user's permissions change. The wire is tested in tests/transports/test_list_changed_scoping.py."""

from __future__ import annotations

import pytest
from asgiref.sync import sync_to_async
from django.contrib.auth.models import Permission, User

from mcp_app.conf import mcp_settings
from mcp_app.notifications import StreamAudience

pytestmark = pytest.mark.django_db(transaction=True)

MEMBERS = {"type": "mcp.coalesced", "exposures": ["library.member"]}
AUTHORS = {"type": "mcp.coalesced", "exposures": ["library.author"]}


@pytest.fixture(autouse=True)
async def close_thread_connections(transactional_db: None):
    yield
    from django.db import connections

    await sync_to_async(connections.close_all)()


async def test_a_stream_admits_list_changed_only_for_exposures_its_caller_may_read() -> None:
    reader = await sync_to_async(User.objects.create_user)("reader")
    audience = StreamAudience(reader)
    assert await audience.admits(MEMBERS) is False  # librarians only
    assert await audience.admits(AUTHORS) is True  # public
    assert await audience.admits({"type": "mcp.coalesced", "exposures": ["library.member", "library.book"]}) is True
    assert await audience.admits({"type": "mcp.coalesced"}) is True  # about no exposure in particular
    assert await StreamAudience(None).admits(MEMBERS) is False and await StreamAudience(None).admits(AUTHORS) is True


async def test_the_set_is_kept_until_the_catalog_or_the_users_permissions_change() -> None:
    reader = await sync_to_async(User.objects.create_user)("reader")
    audience = StreamAudience(reader)
    first = await audience.readable()
    assert await audience.readable() is first  # kept: no permission check, no query, per notification
    mcp_settings.PROVIDER.invalidate()  # an exposure or tool row changed on some worker
    again = await audience.readable()
    assert again == first and again is not first
    view_member = await Permission.objects.aget(codename="view_member")
    await sync_to_async(reader.user_permissions.add)(view_member)  # signals drop every cached copy of the user
    assert "library.member" in await audience.readable()
    assert await audience.admits(MEMBERS) is True
    await sync_to_async(reader.user_permissions.clear)()
    assert await audience.admits(MEMBERS) is False
