"""The MCP protocol, free of Django and of HTTP: JSON-RPC framing, versions, the method dispatcher,
the per-request context and the provider interface the dispatcher calls."""
