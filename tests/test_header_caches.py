"""The per-value caches of header verdicts (Accept, Content-Type, Host) hold short values only: a client sending
large, ever-different headers gets correct answers and cannot grow them."""

from __future__ import annotations

from django.test import override_settings

from mcp_app.transports import negotiation, security


def scope_with_host(host: str) -> dict:
    return {"type": "http", "headers": [(b"host", host.encode("latin-1"))]}


def test_long_accept_and_content_type_values_are_judged_but_not_kept() -> None:
    before = (negotiation._accepts_remembered.cache_info().currsize, negotiation._declares_json_remembered.cache_info().currsize)
    for i in range(20):
        padding = ";x=" + "y" * 10_000 + str(i)
        assert negotiation.accepts("application/json" + padding + ", text/event-stream", "text/event-stream")
        assert not negotiation.accepts("text/html" + padding, "application/json")
        assert negotiation.declares_json("application/json" + padding)
    after = (negotiation._accepts_remembered.cache_info().currsize, negotiation._declares_json_remembered.cache_info().currsize)
    assert after == before


def test_short_values_are_remembered_with_the_same_verdicts() -> None:
    assert negotiation.accepts("application/json, text/event-stream", "text/event-stream")
    assert not negotiation.accepts("application/json;q=0, text/event-stream", "application/json")
    assert negotiation.declares_json("application/json; charset=utf-8")
    assert not negotiation.declares_json("text/plain")
    assert negotiation._accepts_remembered.cache_info().currsize > 0


@override_settings(ALLOWED_HOSTS=["example.com"])
def test_a_long_host_header_is_refused_and_not_kept() -> None:
    before = security._host_verdict.cache_info().currsize
    for i in range(20):
        assert not security.host_allowed(scope_with_host("a" * 5_000 + f"{i}.example.com"))
    assert security._host_verdict.cache_info().currsize == before
    assert security.host_allowed(scope_with_host("example.com:8000"))
