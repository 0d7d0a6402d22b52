"""The demo's open dynamic client registration, kept in bounds: a rate limit per client address, a consent
page that shows where the code will go and that the client registered itself, and a purge of registrations
never used. Through Django's test client against the demo's URLs; the SDK's and the Inspector's full flows
against a live demo server are in tests/transports/test_oauth.py."""

from __future__ import annotations

import base64
import hashlib
import io
import json
import re
from datetime import timedelta
from typing import Any
from urllib.parse import urlencode, urlsplit

import pytest
from django.contrib.auth.models import User
from django.core.management import call_command
from django.test import Client, override_settings
from django.utils import timezone
from oauth2_provider.models import AccessToken, Application, Grant

from mcpsite import settings as demo_settings
from mcpsite.demo.models import ClientUse

pytestmark = pytest.mark.django_db

# A window that no test run straddles (windows are aligned to multiples of it since the epoch).
WINDOW = 10**9
demo = override_settings(
    ROOT_URLCONF="mcpsite.urls",
    OAUTH2_PROVIDER=demo_settings.OAUTH2_PROVIDER,
    DEMO_REGISTRATION_RATE=(3, WINDOW),
    DEMO_UNUSED_CLIENT_HOURS=24,
)


def register(
    client: Client, address: str, redirect_uri: str = "http://127.0.0.1:9/callback", name: str = "mcp client", body: Any = None
) -> Any:
    metadata = {
        "client_name": name,
        "redirect_uris": [redirect_uri],
        "grant_types": ["authorization_code", "refresh_token"],
        "response_types": ["code"],
        "token_endpoint_auth_method": "none",
    }
    return client.post(
        "/o/register/", data=json.dumps(metadata) if body is None else body, content_type="application/json", REMOTE_ADDR=address
    )


def authorize_url(client_id: str, redirect_uri: str) -> str:
    verifier = "v" * 64
    challenge = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=").decode()
    return "/o/authorize/?" + urlencode(
        {
            "client_id": client_id,
            "response_type": "code",
            "redirect_uri": redirect_uri,
            "scope": "mcp",
            "code_challenge": challenge,
            "code_challenge_method": "S256",
            "state": "s",
        }
    )


@demo
def test_registration_is_rate_limited_per_client_address() -> None:
    client = Client()
    for _ in range(2):
        assert register(client, "203.0.113.7").status_code == 201
    assert register(client, "203.0.113.7", body="not json").status_code == 400  # a bad attempt counts too
    refused = register(client, "203.0.113.7")
    assert refused.status_code == 429
    assert refused["content-type"] == "application/json"
    error = refused.json()
    assert error["error"] == "too_many_requests" and "at most 3 every" in error["error_description"]
    assert 0 < int(refused["retry-after"]) <= WINDOW
    assert Application.objects.filter(registration_source="dcr").count() == 2  # the refused one was not created
    # Another address has its own allowance: registration stays open.
    assert register(client, "203.0.113.8").status_code == 201


@demo
def test_the_consent_page_shows_the_redirect_host_and_that_the_client_registered_itself() -> None:
    client = Client()
    redirect = "https://collector.example:8443/oauth/cb"
    registered = register(client, "198.51.100.1", redirect_uri=redirect, name="Claude <script>alert(1)</script>")
    assert registered.status_code == 201
    client.force_login(User.objects.create_user("consenting", password="x"))
    page = client.get(authorize_url(registered.json()["client_id"], redirect))
    assert page.status_code == 200
    text = page.content.decode()
    host = re.search(r'<p id="redirect-host"[^>]*>(.*?)</p>', text, re.S)
    assert host and "<strong>collector.example:8443</strong>" in host.group(1) and redirect in host.group(1)
    assert "this computer" not in host.group(1)
    assert 'id="self-registered"' in text and "This client registered itself" in text
    assert "<script>alert(1)</script>" not in text and "&lt;script&gt;" in text  # the name is the client's, escaped
    # A client created in the admin, redirecting to a loopback address: no "registered itself", "this computer".
    manual = Application.objects.create(
        name="Desktop app",
        client_type="public",
        redirect_uris="http://127.0.0.1:7777/cb",
        authorization_grant_type="authorization-code",
    )
    page = client.get(authorize_url(manual.client_id, "http://127.0.0.1:7777/cb")).content.decode()
    assert "<strong>127.0.0.1:7777</strong>" in page and "(a program on this computer)" in page
    assert 'id="self-registered"' not in page


def age(application: Application, hours: float) -> None:
    Application.objects.filter(pk=application.pk).update(created=timezone.now() - timedelta(hours=hours))


@demo
def test_registrations_never_used_are_purged() -> None:
    client = Client()
    ids = [register(client, "192.0.2.1", name=name).json()["client_id"] for name in ("unused", "used")]
    unused, used = (Application.objects.get(client_id=i) for i in ids)
    assert AccessToken.objects.filter(application=unused).count() == 1  # its registration token: not a use
    assert not ClientUse.objects.exists()
    # A user approves "used": the grant marks it used for good, even after the grant is exchanged and gone.
    client.force_login(User.objects.create_user("approver", password="x"))
    consent = client.get(authorize_url(used.client_id, "http://127.0.0.1:9/callback"))
    fields = dict(re.findall(r'<input type="hidden" name="([^"]+)" value="([^"]*)"', consent.content.decode()))
    approved = client.post("/o/authorize/", data={**fields, "allow": "Authorize"})
    assert approved.status_code == 302 and "code=" in urlsplit(approved["location"]).query
    assert ClientUse.objects.filter(application=used).exists()
    Grant.objects.filter(application=used).delete()
    manual = Application.objects.create(
        name="from the admin",
        client_type="public",
        redirect_uris="http://127.0.0.1:9/cb",
        authorization_grant_type="authorization-code",
    )
    for application in (unused, used, manual):
        age(application, 25)

    out = io.StringIO()
    call_command("purge_unused_clients", "--dry-run", stdout=out)
    assert out.getvalue().startswith("1 unused client registration(s)")
    assert Application.objects.filter(pk=unused.pk).exists()
    call_command("purge_unused_clients", stdout=out)
    assert "Deleted 1 unused" in out.getvalue()
    assert set(Application.objects.values_list("pk", flat=True)) == {used.pk, manual.pk}
    assert not AccessToken.objects.filter(application_id=unused.pk).exists()  # its registration token went with it

    # Younger than the age: kept; a new registration purges the stale ones as it goes.
    fresh = Application.objects.get(client_id=register(client, "192.0.2.1", name="fresh").json()["client_id"])
    call_command("purge_unused_clients", "--hours", "1", stdout=out)
    assert Application.objects.filter(pk=fresh.pk).exists()
    age(fresh, 30)
    assert register(client, "192.0.2.2", name="newer").status_code == 201
    assert not Application.objects.filter(pk=fresh.pk).exists()


@demo
def test_purge_command_refuses_a_negative_age() -> None:
    from django.core.management.base import CommandError

    with pytest.raises(CommandError, match="--hours"):
        call_command("purge_unused_clients", "--hours", "-1")


@demo
@override_settings(DEBUG=True)  # the demo's default (DJANGO_DEBUG=1), where the toolkit's OIDC views raised
@pytest.mark.parametrize(
    "url",
    [
        "/o/.well-known/openid-configuration",
        "/o/.well-known/openid-configuration/",
        "/.well-known/openid-configuration/o",
        "/o/.well-known/jwks.json",
        "/o/userinfo/",
        "/o/logout/",
    ],
)
def test_openid_connect_is_not_offered_and_its_urls_are_a_json_404(url: str) -> None:
    response = Client(raise_request_exception=False).get(url)
    assert response.status_code == 404
    assert response["Content-Type"] == "application/json"
    assert response.json()["error"] == "not_found"
    # ...and nothing advertises it: the RFC 8414 metadata names no OIDC endpoint.
    metadata = Client().get("/.well-known/oauth-authorization-server/o").json()
    assert not {"jwks_uri", "userinfo_endpoint", "end_session_endpoint"} & metadata.keys()
    assert metadata["authorization_endpoint"].endswith("/o/authorize/")
