"""The demo site's MCP tools, resources and prompts (autodiscovered by mcp_app)."""

from __future__ import annotations

from typing import Annotated

from pydantic import Field

from mcp_app import Context, prompt, resource, tool


# Quick and database-free: run on the event loop, without the hand-off to Django's sync thread.
@tool(
    title="Uppercase text",
    annotations={"readOnlyHint": True, "idempotentHint": True, "openWorldHint": False},
    run_in_thread=False,
)
def uppercase_text(text: Annotated[str, Field(description="The text to convert")]) -> str:
    """Convert text to uppercase (the tutorial's tool)."""
    return text.upper()


@tool(title="Count words", annotations={"readOnlyHint": True})
async def count_words(text: str, ctx: Context) -> dict[str, int]:
    """Count the words and characters of a text, logging what it does."""
    await ctx.info(f"counting {len(text)} characters")
    return {"words": len(text.split()), "characters": len(text)}


@resource("mcpsite://about", name="about", title="About this server", mime_type="text/markdown")
def about() -> str:
    """What this demo server is."""
    return "# mcpsite\n\nThe demo project of mcp_app: a Django site speaking the Model Context Protocol.\n"


@prompt(title="Shout", arguments={"text": "What to shout"})
def shout(text: str) -> str:
    """Ask the model to repeat a text in capitals."""
    return f"Repeat this in capital letters, with enthusiasm: {text}"
