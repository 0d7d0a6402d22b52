"""Optional integrations (each needs its extra: ``pip install mcp_app[oauth]``)."""
