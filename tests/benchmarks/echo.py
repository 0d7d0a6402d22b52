"""The benchmark's tool, one function registered with both servers (tests/benchmarks/mcp.py for mcp_app,
tests/benchmarks/sdk_server.py for the official SDK), so both run the same code per call."""


def echo(text: str) -> str:
    """Return the text unchanged."""
    return text
