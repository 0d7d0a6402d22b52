"""The Host check remembers its verdicts per (Host, ALLOWED_HOSTS): a changed setting still applies at once."""

from __future__ import annotations

from django.test import override_settings

from mcp_app.transports.security import host_allowed


def scope_with_host(host: str) -> dict:
    return {"type": "http", "headers": [(b"host", host.encode())]}


def test_a_verdict_follows_allowed_hosts_when_the_setting_changes() -> None:
    scope = scope_with_host("rebound.example:8000")
    with override_settings(ALLOWED_HOSTS=["rebound.example"], DEBUG=False):
        assert host_allowed(scope) is True
        assert host_allowed(scope) is True  # remembered
    with override_settings(ALLOWED_HOSTS=["127.0.0.1"], DEBUG=False):
        assert host_allowed(scope) is False  # the remembered verdict belonged to the other setting
        assert host_allowed(scope_with_host("127.0.0.1:8000")) is True
        assert host_allowed(scope_with_host("")) is False
        assert host_allowed(scope_with_host("[bad")) is False
