"""Version negotiation and the per-version shape of what we send."""

from __future__ import annotations

import pytest

from mcp_app.protocol import versions


@pytest.mark.parametrize(
    ("requested", "negotiated"),
    [
        ("2024-11-05", "2024-11-05"),
        ("2025-03-26", "2025-03-26"),
        ("2025-06-18", "2025-06-18"),
        ("2025-11-25", "2025-11-25"),
        ("2099-01-01", "2025-11-25"),
        ("2024-10-07", "2025-11-25"),
        (None, "2025-11-25"),
        (20251125, "2025-11-25"),
    ],
)
def test_negotiate(requested: object, negotiated: str) -> None:
    assert versions.negotiate(requested) == negotiated


def test_batches_only_in_2025_03_26() -> None:
    assert [v for v in versions.SUPPORTED_VERSIONS if versions.allows_batches(v)] == ["2025-03-26"]


def test_adapt_strips_fields_older_versions_lack() -> None:
    tool = {
        "name": "t",
        "inputSchema": {"type": "object"},
        "title": "T",
        "outputSchema": {"type": "object"},
        "annotations": {"readOnlyHint": True},
    }
    assert versions.adapt("tool", tool, "2025-11-25") is tool
    assert set(versions.adapt("tool", tool, "2025-03-26")) == {"name", "inputSchema", "annotations"}
    assert set(versions.adapt("tool", tool, "2024-11-05")) == {"name", "inputSchema"}
    result = {"content": [], "structuredContent": {"a": 1}}
    assert "structuredContent" not in versions.adapt("tool_result", result, "2025-03-26")
    assert versions.content_allowed({"type": "audio"}, "2025-03-26")
    assert not versions.content_allowed({"type": "audio"}, "2024-11-05")
    assert not versions.content_allowed({"type": "resource_link"}, "2025-03-26")
