"""Bearer tokens (admin, mcp_token), authentication classes, policy defaults, withdrawn access and idle
sessions, in-process. The wire (401/403/404/429 answers) is tested in tests/transports/test_abuse.py."""

from __future__ import annotations

import io
from datetime import timedelta
from typing import Any

import pytest
from asgiref.sync import async_to_sync
from django.conf import settings
from django.contrib.auth.models import User
from django.core.management import call_command
from django.test import override_settings
from django.utils import timezone

from mcp_app import auth
from mcp_app.models import Session, Token
from mcp_app.permissions import AllowAny
from mcp_app.protocol.context import MemorySession, PendingClientRequests, RequestContext
from mcp_app.providers.code import Registry
from mcp_app.runtime import get_server, reap_idle_sessions

pytestmark = pytest.mark.django_db(transaction=True)

SECURE = {**settings.MCP_APP, "ALLOW_ANONYMOUS": False, "DEFAULT_PERMISSION_CLASSES": ["mcp_app.permissions.IsAuthenticated"]}


def scope(*, authorization: str | None = None, query: bytes = b"") -> dict[str, Any]:
    headers = [(b"host", b"testserver")]
    if authorization:
        headers.append((b"authorization", authorization.encode()))
    return {"type": "http", "method": "POST", "headers": headers, "query_string": query, "scheme": "http"}


@pytest.fixture(autouse=True)
def fresh_cache() -> None:
    auth.forget_credentials()


def test_mcp_token_prints_a_token_that_is_stored_only_as_a_hash() -> None:
    user = User.objects.create_user("alice")
    out, err = io.StringIO(), io.StringIO()
    call_command("mcp_token", "alice", "--name", "laptop", "--days", "30", stdout=out, stderr=err)
    key = out.getvalue().strip()
    token = Token.objects.get()
    assert key.startswith("mcp_") and len(key) > 40 and token.key_prefix == key[:12] in err.getvalue()
    assert token.key_hash == Token.hash(key) and key not in str(list(Token.objects.values()))
    assert 29 <= (token.expires - timezone.now()).days <= 30
    principal = auth.authenticate_sync(scope(authorization=f"Bearer {key}"))
    assert (principal.user, principal.kind, principal.key) == (user, "token", f"token:{token.pk}")
    assert Token.objects.get().last_used is not None
    for bad in (["nobody"], ["alice", "--days", "0"]):
        with pytest.raises(Exception, match="No user|at least 1"):
            call_command("mcp_token", *bad, stdout=io.StringIO(), stderr=io.StringIO())


@override_settings(MCP_APP=SECURE)
def test_credentials_are_checked() -> None:
    user = User.objects.create_user("alice")
    _, key = Token.create_for(user, name="ok")
    _, expired = Token.create_for(user, name="old", expires=timezone.now() - timedelta(seconds=1))
    _, read_only = Token.create_for(user, name="read", scopes="read")
    with pytest.raises(auth.NotAuthenticated):
        auth.authenticate_sync(scope())
    with pytest.raises(auth.NotAuthenticated):  # a token in the query string is no credential at all
        auth.authenticate_sync(scope(query=f"access_token={key}&token={key}".encode()))
    for bad in (expired, "mcp_nope", "not-ours", ""):
        with pytest.raises(auth.AuthenticationFailed):
            auth.authenticate_sync(scope(authorization=f"Bearer {bad}"))
    with pytest.raises(auth.InsufficientScope):
        auth.authenticate_sync(scope(authorization=f"Bearer {read_only}"))
    assert auth.authenticate_sync(scope(authorization=f"bearer {key}")).user == user  # the scheme is case-insensitive
    user.is_active = False
    user.save()
    auth.forget_credentials()
    with pytest.raises(auth.AuthenticationFailed):
        auth.authenticate_sync(scope(authorization=f"Bearer {key}"))
    with override_settings(MCP_APP={**SECURE, "ALLOW_ANONYMOUS": True}):
        assert auth.authenticate_sync(scope()) == auth.Principal(key="anonymous")


@override_settings(MCP_APP=SECURE)
def test_public_items_need_to_be_marked_so() -> None:
    from mcp_app.providers.managed import ManagedProvider

    registry = Registry()

    @registry.tool()
    def private() -> str:
        return "p"

    @registry.tool(permission_classes=[AllowAny])
    def public() -> str:
        return "p"

    provider = ManagedProvider(registry)

    def names(user: Any) -> list[str]:
        ctx = RequestContext(
            session=MemorySession(), request_id=1, meta={}, send=None, pending=PendingClientRequests(), extra={"user": user}
        )
        return [t["name"] for t in async_to_sync(provider.list_tools)(ctx)]

    assert names(None) == ["public"]
    assert names(User.objects.create_user("alice")) == ["private", "public"]


def make_session(principal: str, user: Any = None) -> str:
    record = async_to_sync(get_server().sessions.create)(
        transport="streamable_http", protocol_version="2025-11-25", principal=principal, user=user
    )
    return record.id


def test_revoking_a_token_or_deactivating_a_user_ends_their_sessions(admin_client: Any) -> None:
    alice = User.objects.create_user("alice")
    token, _ = Token.create_for(alice, name="t")
    other, _ = Token.create_for(alice, name="other")
    revoked_session, kept = make_session(token.principal, alice), make_session(other.principal, alice)
    answer = admin_client.post("/admin/mcp_app/token/", {"action": "revoke", "_selected_action": [token.pk]})
    assert answer.status_code == 302
    token.refresh_from_db()
    assert token.revoked is not None
    assert Session.objects.get(id=revoked_session).ended is not None and Session.objects.get(id=kept).ended is None
    assert async_to_sync(get_server().sessions.get)(revoked_session) is None
    alice.is_active = False
    alice.save()
    assert Session.objects.get(id=kept).ended is not None


def test_admin_shows_a_new_token_once(admin_client: Any) -> None:
    alice = User.objects.create_user("alice")
    answer = admin_client.post("/admin/mcp_app/token/add/", {"user": alice.pk, "name": "Claude", "scopes": "mcp"}, follow=True)
    token = Token.objects.get()
    shown = [str(m) for m in answer.context["messages"]]
    key = shown[0].split("<code style='user-select: all'>")[1].split("</code>")[0]
    assert key.startswith("mcp_") and Token.hash(key) == token.key_hash
    page = admin_client.get(f"/admin/mcp_app/token/{token.pk}/change/")
    assert key not in page.content.decode() and token.key_prefix in page.content.decode()


def test_idle_sessions_are_reaped() -> None:
    old, fresh = make_session("anonymous"), make_session("anonymous")
    Session.objects.filter(id=old).update(last_seen=timezone.now() - timedelta(days=2))
    get_server().sessions.forget(old)
    assert async_to_sync(get_server().sessions.get)(old) is None  # on access
    assert Session.objects.get(id=old).ended is not None
    stale = make_session("anonymous")
    Session.objects.filter(id=stale).update(last_seen=timezone.now() - timedelta(days=2))
    out = io.StringIO()
    call_command("mcp_reap_sessions", stdout=out)  # from cron
    assert "Ended 1 idle session(s)." in out.getvalue()
    assert Session.objects.get(id=stale).ended is not None and Session.objects.get(id=fresh).ended is None
    assert reap_idle_sessions() == 0


@override_settings(MCP_APP=SECURE)
def test_permission_changes_drop_the_cached_user_at_once() -> None:
    """A worker keeps a validated token's user (and the permissions Django caches on it) for a minute;
    a change to the user's groups or permissions, from either side of the relation, drops it at once."""
    from django.contrib.auth.models import Group, Permission

    view_member = Permission.objects.get(codename="view_member")
    desk = Group.objects.create(name="desk")
    desk.permissions.add(view_member)
    dora = User.objects.create_user("dora")
    _, key = Token.create_for(dora, name="t")

    def may_view() -> bool:
        return auth.authenticate_sync(scope(authorization=f"Bearer {key}")).user.has_perm("library.view_member")

    def make_superuser() -> None:
        user = User.objects.get(pk=dora.pk)  # another copy of the user, as the admin would load it
        user.is_superuser = True
        user.save(update_fields=["is_superuser"])

    assert may_view() is False
    dora.groups.add(desk)  # the cached principal's user has its (empty) permissions cached: it must go
    for change, expected in (
        (lambda: None, True),
        (lambda: dora.groups.remove(desk), False),
        (lambda: desk.user_set.add(dora), True),
        (lambda: desk.permissions.remove(view_member), False),
        (lambda: view_member.group_set.add(desk), True),
        (lambda: desk.user_set.clear(), False),
        (lambda: dora.user_permissions.add(view_member), True),
        (lambda: view_member.user_set.remove(dora), False),
        (make_superuser, True),
    ):
        change()
        assert may_view() is expected, change
    User.objects.filter(pk=dora.pk).update(is_superuser=False)
    User.objects.get(pk=dora.pk).save()
    dora.groups.add(desk)
    desk.permissions.add(view_member)
    assert may_view() is True
    desk.delete()  # its links go without m2m signals
    assert may_view() is False
    cached = auth.authenticate_sync(scope(authorization=f"Bearer {key}"))
    User.objects.get(pk=dora.pk).save(update_fields=["last_login"])  # a sign-in changes no permission
    assert auth.authenticate_sync(scope(authorization=f"Bearer {key}")) is cached


def test_credential_expiry_follows_the_rows() -> None:
    """When a session's access ends: a token's own (revoked: now), an OAuth user and client's latest
    unexpired access token (a refresh extends it; none left: now)."""
    from oauth2_provider.models import AccessToken, Application

    alice = User.objects.create_user("alice")
    soon = timezone.now() + timedelta(minutes=5)
    token, _ = Token.create_for(alice, name="t", expires=soon)
    principal = auth.Principal(key=token.principal, user=alice, kind="token", auth=token)
    assert principal.expires == soon and auth.credential_expiry(principal) == soon
    assert auth.credential_expiry(auth.Principal(key="anonymous")) is None
    token.revoked = timezone.now()
    token.save()
    assert auth.credential_expiry(principal) <= timezone.now()
    app = Application.objects.create(
        name="c",
        client_type="public",
        authorization_grant_type="authorization-code",
        redirect_uris="http://127.0.0.1/cb",
        user=alice,
    )
    first = AccessToken.objects.create(user=alice, application=app, token="a1", expires=soon, scope="mcp")
    oauth = auth.Principal(key=f"oauth:{alice.pk}:{app.pk}", user=alice, kind="oauth", auth=first)
    assert auth.credential_expiry(oauth) == soon
    later = soon + timedelta(hours=1)
    AccessToken.objects.create(user=alice, application=app, token="a2", expires=later, scope="mcp")  # a refresh
    assert auth.credential_expiry(oauth) == later
    AccessToken.objects.filter(user=alice).update(expires=timezone.now() - timedelta(seconds=1))
    assert auth.credential_expiry(oauth) <= timezone.now()
