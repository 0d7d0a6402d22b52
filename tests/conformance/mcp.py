"""Every tool, resource and prompt the official conformance suite (@modelcontextprotocol/conformance)
calls, with the names, arguments and values its scenarios check. Autodiscovered like any app's mcp.py.
"""

from __future__ import annotations

import asyncio
import json
import os
from typing import Annotated, Any

from pydantic import Field

from mcp_app import Audio, Context, EmbeddedResource, Image, Text, ToolError, prompt, resource, tool
from mcp_app.models import Prompt, Tool

# A 1x1 PNG and a tiny WAV file, base64-encoded.
PNG = "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8z8DwHwAFBQIAX8jx0gAAAABJRU5ErkJggg=="
WAV = "UklGRiYAAABXQVZFZm10IBAAAAABAAEAQB8AAAB9AAACABAAZGF0YQIAAAA="


@tool()
def test_simple_text() -> str:
    """Returns a simple text response."""
    return "This is a simple text response for testing."


@tool()
def test_image_content() -> Image:
    """Returns an image (a 1x1 PNG)."""
    return Image(PNG, "image/png")


@tool()
def test_audio_content() -> Audio:
    """Returns audio (a short WAV)."""
    return Audio(WAV, "audio/wav")


@tool()
def test_embedded_resource() -> EmbeddedResource:
    """Returns an embedded text resource."""
    return EmbeddedResource("test://embedded-resource", text="This is an embedded resource content.", mime_type="text/plain")


@tool()
def test_multiple_content_types() -> list:
    """Returns text, an image and an embedded resource."""
    return [
        Text("Multiple content types test:"),
        Image(PNG, "image/png"),
        EmbeddedResource(
            "test://mixed-content-resource", text=json.dumps({"test": "data", "value": 123}), mime_type="application/json"
        ),
    ]


@tool()
async def test_tool_with_logging(ctx: Context) -> str:
    """Sends three log messages while it runs."""
    await ctx.info("Tool execution started")
    await asyncio.sleep(0.05)
    await ctx.info("Tool processing data")
    await asyncio.sleep(0.05)
    await ctx.info("Tool execution completed")
    return "Tool with logging executed successfully"


@tool()
def test_error_handling() -> str:
    """Always fails, to test error results."""
    raise ToolError("This tool intentionally returns an error for testing")


@tool()
async def test_tool_with_progress(ctx: Context) -> str:
    """Reports progress 0, 50 and 100 out of 100."""
    for step in (0, 50, 100):
        await ctx.report_progress(step, 100, message=f"Completed step {step} of 100")
        await asyncio.sleep(0.05)
    return str(ctx.progress_token)


@tool()
async def test_sampling(prompt: Annotated[str, Field(description="The prompt to send to the LLM")], ctx: Context) -> str:
    """Asks the client's LLM to answer a prompt (sampling)."""
    result = await ctx.sample([{"role": "user", "content": {"type": "text", "text": prompt}}], max_tokens=100)
    content = result.get("content") or {}
    text = content.get("text", "") if isinstance(content, dict) else ""
    return f"LLM response: {text}"


@tool()
async def test_elicitation(message: Annotated[str, Field(description="The message to show the user")], ctx: Context) -> str:
    """Asks the user for a username and an email address (elicitation)."""
    result = await ctx.elicit(
        message,
        {
            "type": "object",
            "properties": {
                "username": {"type": "string", "description": "User's response"},
                "email": {"type": "string", "description": "User's email address"},
            },
            "required": ["username", "email"],
        },
    )
    return f"User response: action={result.get('action')}, content={json.dumps(result.get('content'))}"


@tool()
async def test_elicitation_sep1034_defaults(ctx: Context) -> str:
    """Elicits a form whose fields all have defaults (SEP-1034)."""
    result = await ctx.elicit(
        "Please review and update the form fields with defaults",
        {
            "type": "object",
            "properties": {
                "name": {"type": "string", "description": "User name", "default": "John Doe"},
                "age": {"type": "integer", "description": "User age", "default": 30},
                "score": {"type": "number", "description": "User score", "default": 95.5},
                "status": {
                    "type": "string",
                    "description": "User status",
                    "enum": ["active", "inactive", "pending"],
                    "default": "active",
                },
                "verified": {"type": "boolean", "description": "Verification status", "default": True},
            },
            "required": [],
        },
    )
    return f"Elicitation completed: action={result.get('action')}, content={json.dumps(result.get('content'))}"


@tool()
async def test_elicitation_sep1330_enums(ctx: Context) -> str:
    """Elicits every kind of enum field (SEP-1330)."""
    result = await ctx.elicit(
        "Please select options from the enum fields",
        {
            "type": "object",
            "properties": {
                "untitledSingle": {
                    "type": "string",
                    "description": "Select one option",
                    "enum": ["option1", "option2", "option3"],
                },
                "titledSingle": {
                    "type": "string",
                    "description": "Select one option with titles",
                    "oneOf": [
                        {"const": "value1", "title": "First Option"},
                        {"const": "value2", "title": "Second Option"},
                        {"const": "value3", "title": "Third Option"},
                    ],
                },
                "legacyEnum": {
                    "type": "string",
                    "description": "Select one option (legacy)",
                    "enum": ["opt1", "opt2", "opt3"],
                    "enumNames": ["Option One", "Option Two", "Option Three"],
                },
                "untitledMulti": {
                    "type": "array",
                    "description": "Select multiple options",
                    "minItems": 1,
                    "maxItems": 3,
                    "items": {"type": "string", "enum": ["option1", "option2", "option3"]},
                },
                "titledMulti": {
                    "type": "array",
                    "description": "Select multiple options with titles",
                    "minItems": 1,
                    "maxItems": 3,
                    "items": {
                        "anyOf": [
                            {"const": "value1", "title": "First Choice"},
                            {"const": "value2", "title": "Second Choice"},
                            {"const": "value3", "title": "Third Choice"},
                        ]
                    },
                },
            },
            "required": [],
        },
    )
    return f"Elicitation completed: action={result.get('action')}, content={json.dumps(result.get('content'))}"


@tool(
    description="Tool with JSON Schema 2020-12 features for conformance testing (SEP-1613)",
    input_schema={
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "type": "object",
        "$defs": {
            "address": {
                "$anchor": "addressDef",
                "type": "object",
                "properties": {"street": {"type": "string"}, "city": {"type": "string"}},
            }
        },
        "properties": {
            "name": {"type": "string"},
            "address": {"$ref": "#/$defs/address"},
            "contactMethod": {"type": "string", "enum": ["phone", "email"]},
            "phone": {"type": "string"},
            "email": {"type": "string"},
        },
        # SEP-2106: composition, conditional and anchor keywords reach the client as written.
        "allOf": [{"anyOf": [{"required": ["phone"]}, {"required": ["email"]}]}],
        "if": {"properties": {"contactMethod": {"const": "phone"}}, "required": ["contactMethod"]},
        "then": {"required": ["phone"]},
        "else": {"required": ["email"]},
        "additionalProperties": False,
    },
)
def json_schema_2020_12_tool(
    name: str | None = None,
    address: dict[str, Any] | None = None,
    contactMethod: str | None = None,  # noqa: N803 - the suite's argument name
    phone: str | None = None,
    email: str | None = None,
) -> str:
    return f"name={name}, address={json.dumps(address)}"


@resource("test://static-text", name="static-text", mime_type="text/plain")
def static_text() -> str:
    """A static text resource."""
    return "This is the content of the static text resource."


@resource("test://static-binary", name="static-binary", mime_type="image/png")
def static_binary() -> bytes:
    """A static binary resource (a 1x1 PNG)."""
    import base64

    return base64.b64decode(PNG)


@resource("test://watched-resource", name="watched-resource", mime_type="text/plain")
def watched_resource() -> str:
    """A resource clients can subscribe to."""
    return "Watched resource content"


@resource("test://template/{id}/data", name="template", mime_type="application/json", completions={"id": ["123", "456", "789"]})
def template_data(id: str) -> str:
    """A templated resource whose id is reflected in its data."""
    return json.dumps({"id": id, "templateTest": True, "data": f"Data for ID: {id}"})


@prompt()
def test_simple_prompt() -> str:
    """A simple prompt without arguments."""
    return "This is a simple prompt for testing."


@prompt(
    arguments={"arg1": "First test argument", "arg2": "Second test argument"},
    completions={"arg1": ["testValue1", "testValue2", "other"]},
)
def test_prompt_with_arguments(arg1: str, arg2: str) -> str:
    """A prompt with two required arguments."""
    return f"Prompt with arguments: arg1='{arg1}', arg2='{arg2}'"


@prompt(arguments={"resourceUri": "URI of the resource to embed"})
def test_prompt_with_embedded_resource(resourceUri: str) -> list:  # noqa: N803 - the suite's argument name
    """A prompt that embeds a resource."""
    return [
        EmbeddedResource(resourceUri, text="Embedded resource content for testing.", mime_type="text/plain"),
        Text("Please process the embedded resource above."),
    ]


@prompt()
def test_prompt_with_image() -> list:
    """A prompt that includes an image."""
    return [Image(PNG, "image/png"), Text("Please analyze the image above.")]


# -- Beyond the conformance suite: fixtures for this project's own wire tests ---------------------------

_cancelled: list[str] = []


@tool()
async def list_client_roots(ctx: Context) -> str:
    """Asks the client for its roots (roots/list) and lists their URIs."""
    result = await ctx.list_roots()
    return ", ".join(root["uri"] for root in result.get("roots", []))


@tool()
async def wait_until_cancelled(label: str, ctx: Context) -> str:
    """Waits up to a minute; a cancelled call is recorded under its label (see test://cancelled)."""
    try:
        await asyncio.sleep(60)
    except asyncio.CancelledError:
        _cancelled.append(label)
        raise
    return "not cancelled"


@resource("test://cancelled", name="cancelled", mime_type="application/json")
def cancelled_calls() -> str:
    """Labels of wait_until_cancelled calls that were cancelled, oldest first."""
    return json.dumps(_cancelled)


@tool()
async def test_reconnection(ctx: Context) -> str:
    """Closes its SSE stream right after the priming event, then finishes: the client gets the result by
    resuming the stream (GET with Last-Event-ID), as the suite's server-sse-polling scenario checks."""
    await ctx.close_stream()
    await asyncio.sleep(0.2)  # the answer is produced while no connection carries the stream
    return "Reconnection test completed successfully"


@tool()
async def slow_steps(steps: int, delay: float, ctx: Context) -> str:
    """Reports progress 1..steps, one step every `delay` seconds; answers which worker process ran it (for
    the tests that cut a client's connection mid-call and resume the stream on another worker)."""
    for step in range(1, steps + 1):
        await asyncio.sleep(delay)
        await ctx.report_progress(step, steps, message=f"step {step}")
    return f"{steps} steps on worker {os.getpid()}"


# -- MCP 2026-07-28 diagnostics (the server-stateless and http-custom-header scenarios) ----------------------
@tool()
async def test_missing_capability(ctx: Context) -> str:
    """Needs sampling: a modern request whose client did not declare it is refused with -32021 (HTTP 400)."""
    result = await ctx.sample([{"role": "user", "content": {"type": "text", "text": "Say hi."}}], max_tokens=10)
    content = result.get("content") or {}
    return content.get("text", "") if isinstance(content, dict) else ""


@tool()
async def test_logging_tool(ctx: Context) -> str:
    """Logs one message: it goes out only when the request asked for a log level (modern era)."""
    await ctx.info("test_logging_tool ran")
    return "logged"


@tool()
def test_header_param(
    region: Annotated[
        str, Field(description="Mirrored into the Mcp-Param-Region header", json_schema_extra={"x-mcp-header": "Region"})
    ],
    count: Annotated[int, Field(json_schema_extra={"x-mcp-header": "Count"})] = 1,
) -> str:
    """A tool whose arguments travel in HTTP headers too (x-mcp-header): the server checks they agree."""
    return f"region={region}, count={count}"


# -- MCP 2026-07-28: multi round-trip requests (the input-required-result-* scenarios, and server-stateless's
# capability checks). The same code serves the handshake era, where each question is a request to the client.
_NAME_FORM = {"type": "object", "properties": {"name": {"type": "string"}}, "required": ["name"]}


def _sampled_text(result: dict[str, Any]) -> str:
    content = result.get("content") or {}
    blocks = content if isinstance(content, list) else [content]
    return " ".join(block.get("text", "") for block in blocks if isinstance(block, dict))


@tool()
async def test_streaming_elicitation(ctx: Context) -> str:
    """Asks the user a question: in the modern era an InputRequiredResult, never a request on the stream."""
    result = await ctx.elicit("What is your name?", _NAME_FORM, key="user_name")
    return f"Hello, {(result.get('content') or {}).get('name', 'stranger')}!"


@tool()
async def test_input_required_result_elicitation(ctx: Context) -> str:
    """One elicitation (key user_name), then a greeting."""
    result = await ctx.elicit("What is your name?", _NAME_FORM, key="user_name")
    if result.get("action") != "accept":
        return f"No name given ({result.get('action')})."
    return f"Hello, {(result.get('content') or {}).get('name')}!"


@tool()
async def test_input_required_result_sampling(ctx: Context) -> str:
    """One sampling request (key capital_question), then the sampled text."""
    question = [{"role": "user", "content": {"type": "text", "text": "What is the capital of France?"}}]
    result = await ctx.sample(question, max_tokens=100, key="capital_question")
    return f"The model said: {_sampled_text(result)}"


@tool()
async def test_input_required_result_list_roots(ctx: Context) -> str:
    """One roots/list request (key client_roots), then the roots it got."""
    result = await ctx.list_roots(key="client_roots")
    return "Client roots: " + ", ".join(root.get("uri", "?") for root in result.get("roots", []))


@tool()
async def test_input_required_result_request_state(ctx: Context) -> str:
    """One confirmation (key confirm) with a requestState; the retry's state is verified before the tool runs
    again (a bad one is refused without running it)."""
    form = {"type": "object", "properties": {"ok": {"type": "boolean"}}, "required": ["ok"]}
    result = await ctx.elicit("Please confirm", form, key="confirm")
    return f"state-ok: confirmed={(result.get('content') or {}).get('ok')}"


@tool()
async def test_input_required_result_multiple_inputs(ctx: Context) -> str:
    """Three inputs asked in one round (asyncio.gather): elicitation, sampling and roots."""
    name, greeting, roots = await asyncio.gather(
        ctx.elicit("What is your name?", _NAME_FORM, key="user_name"),
        ctx.sample([{"role": "user", "content": {"type": "text", "text": "Generate a greeting"}}], max_tokens=50, key="greeting"),
        ctx.list_roots(key="client_roots"),
    )
    uris = ", ".join(root.get("uri", "?") for root in roots.get("roots", []))
    return f"{_sampled_text(greeting)} {(name.get('content') or {}).get('name')} (roots: {uris})"


@tool()
async def test_input_required_result_multi_round(ctx: Context) -> str:
    """Two questions, one round each: the second is asked once the first is answered."""
    first = await ctx.elicit("Step 1: What is your name?", _NAME_FORM, key="step1")
    color_form = {"type": "object", "properties": {"color": {"type": "string"}}, "required": ["color"]}
    second = await ctx.elicit("Step 2: What is your favorite color?", color_form, key="step2")
    name, color = (first.get("content") or {}).get("name"), (second.get("content") or {}).get("color")
    return f"{name} likes {color}."


@tool()
async def test_input_required_result_tampered_state(ctx: Context) -> str:
    """One confirmation; a retry with a tampered requestState is refused before the tool runs again."""
    form = {"type": "object", "properties": {"ok": {"type": "boolean"}}, "required": ["ok"]}
    result = await ctx.elicit("Please confirm", form, key="confirm")
    return f"confirmed={(result.get('content') or {}).get('ok')}"


@tool()
async def test_input_required_result_capabilities(ctx: Context) -> str:
    """Asks only for what the client declared: elicitation if it can, else sampling, else nothing."""
    if "elicitation" in ctx.client_capabilities:
        result = await ctx.elicit("What is your name?", _NAME_FORM, key="user_name")
        return f"Hello, {(result.get('content') or {}).get('name')}!"
    if "sampling" in ctx.client_capabilities:
        result = await ctx.sample([{"role": "user", "content": {"type": "text", "text": "Pick a name."}}], max_tokens=20)
        return f"Hello, {_sampled_text(result)}!"
    return "Hello, stranger (the client can neither elicit nor sample)."


@prompt()
async def test_input_required_result_prompt(ctx: Context) -> str:
    """A prompt that asks the user for its context first (key user_context)."""
    form = {"type": "object", "properties": {"context": {"type": "string"}}, "required": ["context"]}
    result = await ctx.elicit("What context should the prompt use?", form, key="user_context")
    return f"Answer with this context in mind: {(result.get('content') or {}).get('context')}"


# -- subscriptions/listen (2026-07-28): the suite calls these while a listen stream is open ------------------
@tool()
def test_trigger_tool_change() -> str:
    """Saves this tool's row, as an admin's edit would: every worker drops its cached tool rows and every
    stream that opted in gets notifications/tools/list_changed (the real path: signal, commit, bus)."""
    Tool.objects.get_or_create(name="test_trigger_tool_change")[0].save()
    return "The tool list changed."


@tool()
def test_trigger_prompt_change() -> str:
    """Saves the row of the prompt test_simple_prompt, as an admin's edit would: streams that opted in get
    notifications/prompts/list_changed."""
    Prompt.objects.get_or_create(name="test_simple_prompt", defaults={"from_code": True})[0].save()
    return "The prompt list changed."
