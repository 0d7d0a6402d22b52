"""Tools, resources and prompts registered in code.

Decorate sync or async functions in an app's ``mcp.py`` (autodiscovered at start-up)::

    from mcp_app import tool

    @tool(title="Uppercase text")
    def uppercase_text(text: str) -> str:
        "Convert text to uppercase."
        return text.upper()

Input schemas come from type hints (JSON Schema 2020-12, by pydantic); arguments are validated before
the handler runs. A parameter annotated :class:`~mcp_app.protocol.context.RequestContext` receives the
request context instead of an argument.
"""

from __future__ import annotations

import asyncio
import contextvars
import inspect
import json
import logging
import re
import typing
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field, is_dataclass
from typing import Any, TypeVar

import jsonschema
from asgiref.sync import AsyncToSync, SyncToAsync
from channels.db import database_sync_to_async
from django.core.exceptions import SynchronousOnlyOperation
from django.db import close_old_connections
from django.utils.module_loading import autodiscover_modules
from pydantic import BaseModel, ConfigDict, TypeAdapter, ValidationError, create_model

from ..content import Content, ToolResult, content_dict, resource_contents, to_jsonable, tool_result
from ..protocol.context import RequestContext
from ..protocol.envelope import param_header_problems
from ..protocol.errors import ClientRequestError, InvalidParams, McpError, RequestCancelled, ResourceNotFound
from ..protocol.provider import CacheHint, Provider
from .caching import SCOPES, all_open, open_to_all, resolve

logger = logging.getLogger("mcp_app")

F = TypeVar("F", bound=Callable[..., Any])
R = TypeVar("R")

# Names clients accept for tools and prompts (the 2025-11-25 spec's SHOULD: letters, digits, _-.).
_NAME_RE = re.compile(r"^[A-Za-z0-9_.\-]{1,128}$")


class ToolError(Exception):
    """Raise in a tool to return ``isError: true`` with this message shown to the client (and its LLM)."""


Completer = Callable[..., Any] | Iterable[str]


def _is_context(annotation: Any) -> bool:
    return inspect.isclass(annotation) and issubclass(annotation, RequestContext)


async def _invoke(fn: Callable[..., Any], kwargs: dict[str, Any], *, in_thread: bool = True) -> Any:
    """Await an async handler; run a sync one in Django's thread (:func:`run_in_django_thread`), or, with
    ``in_thread=False``, call it right here on the event loop."""
    if inspect.iscoroutinefunction(fn):
        return await fn(**kwargs)
    if not in_thread:
        return fn(**kwargs)
    return await run_in_django_thread(fn, **kwargs)


async def run_in_django_thread(fn: Callable[..., R], *args: Any, **kwargs: Any) -> R:
    """``fn(*args, **kwargs)`` where ``database_sync_to_async`` would run it, as it would: in a server,
    asgiref's one thread for thread-sensitive code (``SyncToAsync.single_thread_executor``), with the
    caller's context variables, and Django's stale connections closed before and after.

    That common case is handed to the thread directly: asgiref's general path (choosing among executors,
    context round trips, shielding) cost as much as a small tool's whole call. Under an outer
    ``async_to_sync`` (tests, management commands) or a ``ThreadSensitiveContext``, ``fn`` must run in that
    caller's thread, and asgiref routes it.
    """
    loop = asyncio.get_running_loop()
    if (
        getattr(AsyncToSync.executors, "current", None) is not None
        or SyncToAsync.thread_sensitive_context.get(None) is not None
        or loop in AsyncToSync.loop_thread_executors
    ):
        return await database_sync_to_async(fn)(*args, **kwargs)
    context = contextvars.copy_context()
    return await loop.run_in_executor(SyncToAsync.single_thread_executor, context.run, _with_clean_connections, fn, args, kwargs)


def _with_clean_connections(fn: Callable[..., R], args: tuple[Any, ...], kwargs: dict[str, Any]) -> R:
    """``fn(*args, **kwargs)`` between two of Django's connection clean-ups, as ``database_sync_to_async``
    runs it."""
    close_old_connections()
    try:
        return fn(*args, **kwargs)
    finally:
        close_old_connections()


@dataclass
class _Signature:
    """A handler's parameters as a pydantic model, minus the injected context parameter."""

    model: type[BaseModel]
    context_param: str | None
    hints: dict[str, Any]

    @classmethod
    def of(cls, fn: Callable[..., Any], model_name: str) -> _Signature:
        hints = typing.get_type_hints(fn, include_extras=True)
        fields: dict[str, Any] = {}
        context_param = None
        for name, param in inspect.signature(fn).parameters.items():
            annotation = hints.get(name, Any)
            if _is_context(annotation):
                context_param = name
                continue
            if param.kind in (param.VAR_POSITIONAL, param.VAR_KEYWORD):
                raise TypeError(f"{fn.__qualname__}: *args and **kwargs cannot be described as MCP arguments")
            default = ... if param.default is inspect.Parameter.empty else param.default
            fields[name] = (annotation, default)
        model = create_model(model_name, __config__=ConfigDict(arbitrary_types_allowed=True), **fields)
        return cls(model, context_param, hints)

    def bind(self, arguments: dict[str, Any], ctx: RequestContext) -> dict[str, Any]:
        validated = self.model.model_validate(arguments)
        kwargs = {name: getattr(validated, name) for name in type(validated).model_fields}
        if self.context_param:
            kwargs[self.context_param] = ctx
        return kwargs


def _describe_validation_error(exc: ValidationError) -> str:
    parts = []
    for error in exc.errors():
        where = ".".join(str(p) for p in error["loc"]) or "arguments"
        parts.append(f"{where}: {error['msg']}")
    return "; ".join(parts)


def _output_schema(return_type: Any) -> dict[str, Any] | None:
    """A JSON Schema for structured results, when the return type is an object type."""
    if return_type is None or return_type is inspect.Signature.empty:
        return None
    origin = typing.get_origin(return_type) or return_type
    if inspect.isclass(origin) and issubclass(origin, (Content, ToolResult)):
        return None  # content blocks are the unstructured result, not data
    structured = (inspect.isclass(origin) and (issubclass(origin, BaseModel) or is_dataclass(origin))) or typing.is_typeddict(
        origin
    )
    if not structured:
        return None
    return TypeAdapter(return_type).json_schema(mode="serialization")


@dataclass
class ToolSpec:
    """A tool: its wire definition and the function behind it."""

    name: str
    fn: Callable[..., Any]
    description: str = ""
    title: str | None = None
    annotations: dict[str, Any] | None = None
    input_schema: dict[str, Any] = field(default_factory=dict)
    output_schema: dict[str, Any] | None = None
    signature: _Signature | None = None
    explicit_schema: bool = False
    #: Policy classes (mcp_app.permissions); None: MCP_APP["DEFAULT_PERMISSION_CLASSES"].
    permission_classes: list[type] | None = None
    #: Whether a sync ``fn`` runs in Django's thread for sync code (True) or on the event loop (False: a quick
    #: function that neither blocks nor uses the database). No effect on an async ``fn``.
    run_in_thread: bool = True

    @classmethod
    def from_function(
        cls,
        fn: Callable[..., Any],
        *,
        name: str | None = None,
        title: str | None = None,
        description: str | None = None,
        annotations: dict[str, Any] | None = None,
        input_schema: dict[str, Any] | None = None,
        permission_classes: list[type] | None = None,
        run_in_thread: bool = True,
    ) -> ToolSpec:
        name = name or fn.__name__
        if not _NAME_RE.match(name):
            raise ValueError(f"tool name {name!r}: use 1-128 letters, digits, '_', '-' or '.'")
        signature = _Signature.of(fn, f"{name}Arguments")
        if input_schema is not None:
            jsonschema.Draft202012Validator.check_schema(input_schema)
        schema = input_schema or signature.model.model_json_schema()
        problems = param_header_problems(schema)
        if problems:
            raise ValueError(f"tool {name!r}: invalid x-mcp-header annotations: {'; '.join(problems)}")
        return cls(
            explicit_schema=input_schema is not None,
            name=name,
            fn=fn,
            title=title,
            annotations=annotations,
            description=description if description is not None else inspect.cleandoc(fn.__doc__ or ""),
            input_schema=schema,
            output_schema=_output_schema(signature.hints.get("return")),
            signature=signature,
            permission_classes=permission_classes,
            run_in_thread=run_in_thread,
        )

    def bind(self, arguments: dict[str, Any], ctx: RequestContext) -> dict[str, Any]:
        """Validated keyword arguments for the handler (pydantic, or the explicit schema when given)."""
        assert self.signature is not None
        if not self.explicit_schema:
            return self.signature.bind(arguments, ctx)
        jsonschema.validate(arguments, self.input_schema, cls=jsonschema.Draft202012Validator)
        accepted = set(self.signature.model.model_fields)
        kwargs = {k: v for k, v in arguments.items() if k in accepted}
        if self.signature.context_param:
            kwargs[self.signature.context_param] = ctx
        return kwargs

    def definition(self) -> dict[str, Any]:
        """The Tool object for tools/list."""
        out: dict[str, Any] = {"name": self.name, "inputSchema": self.input_schema}
        if self.title:
            out["title"] = self.title
        if self.description:
            out["description"] = self.description
        if self.output_schema:
            out["outputSchema"] = self.output_schema
        if self.annotations:
            out["annotations"] = self.annotations
        return out

    async def call(self, arguments: dict[str, Any], ctx: RequestContext) -> dict[str, Any]:
        """Validate arguments, run the handler and return a CallToolResult.

        Bad arguments and :class:`ToolError` become ``isError`` results the model can read; other
        exceptions are logged and reported without their details (they may hold data or SQL).
        """
        assert self.signature is not None
        try:
            kwargs = self.bind(arguments, ctx)
        except ValidationError as exc:
            return error_result(f"Invalid arguments for tool '{self.name}': {_describe_validation_error(exc)}")
        except jsonschema.ValidationError as exc:
            where = ".".join(str(p) for p in exc.absolute_path) or "arguments"
            return error_result(f"Invalid arguments for tool '{self.name}': {where}: {exc.message}")
        try:
            value = await _invoke(self.fn, kwargs, in_thread=self.run_in_thread)
        except (ToolError, ClientRequestError) as exc:
            return error_result(str(exc))
        except (McpError, RequestCancelled):
            raise
        except Exception as exc:
            if isinstance(exc, SynchronousOnlyOperation) and not self.run_in_thread:
                # The tool's author promised a function that needs no thread, and it used the database: tell the
                # operator what to change; the client gets the same answer as for any other failure.
                logger.exception(
                    "MCP tool %s used the database (or other sync-only Django code) on the event loop: it is "
                    "registered with run_in_thread=False, which is for quick functions that neither block nor "
                    "use the database; register it without that option",
                    self.name,
                )
            else:
                logger.exception("MCP tool %s failed", self.name)
            return error_result(f"Tool '{self.name}' failed with an internal error; the server logged the details.")
        return tool_result(value)


def unknown_tool(name: str) -> InvalidParams:
    """The error for a tool the caller cannot call. Providers answer an unknown, hidden, disabled or
    orphaned tool alike, so that a caller cannot tell them apart."""
    return InvalidParams(f"Unknown tool: '{name}'. Call tools/list to see the tools you can use.")


def unknown_prompt(name: str) -> InvalidParams:
    """The error for a prompt the caller cannot get (unknown, hidden or disabled alike)."""
    return InvalidParams(f"Unknown prompt: '{name}'. Call prompts/list to see the prompts offered.")


def error_result(message: str) -> dict[str, Any]:
    """A CallToolResult reporting ``message`` as a tool error (``isError: true``), for the model to read."""
    return {"content": [{"type": "text", "text": message}], "isError": True}


_TEMPLATE_VAR = re.compile(r"\{([+]?)([A-Za-z_][A-Za-z0-9_]*)\}")


def _template_regex(template: str) -> re.Pattern[str]:
    """RFC 6570 level 1-2 matching: ``{var}`` matches one path segment, ``{+var}`` anything."""
    pattern, pos = [], 0
    for match in _TEMPLATE_VAR.finditer(template):
        pattern.append(re.escape(template[pos : match.start()]))
        op, name = match.groups()
        pattern.append(f"(?P<{name}>.+)" if op == "+" else f"(?P<{name}>[^/?#]+)")
        pos = match.end()
    pattern.append(re.escape(template[pos:]))
    return re.compile("^" + "".join(pattern) + "$")


@dataclass
class ResourceSpec:
    """A resource with a fixed URI, or a template whose variables become the function's arguments."""

    uri: str
    fn: Callable[..., Any]
    name: str
    title: str | None = None
    description: str | None = None
    mime_type: str | None = None
    completions: dict[str, Completer] = field(default_factory=dict)
    signature: _Signature | None = None
    regex: re.Pattern[str] | None = None
    permission_classes: list[type] | None = None
    #: Caching hints of its resources/read results (MCP 2026-07-28); None: the site's (providers.caching).
    cache_ttl_ms: int | None = None
    cache_scope: str | None = None

    @property
    def is_template(self) -> bool:
        return self.regex is not None

    def definition(self) -> dict[str, Any]:
        out: dict[str, Any] = {("uriTemplate" if self.is_template else "uri"): self.uri, "name": self.name}
        for key, value in (("title", self.title), ("description", self.description), ("mimeType", self.mime_type)):
            if value:
                out[key] = value
        return out

    def match(self, uri: str) -> dict[str, str] | None:
        if self.regex is None:
            return {} if uri == self.uri else None
        found = self.regex.match(uri)
        return found.groupdict() if found else None

    async def read(self, uri: str, variables: dict[str, str], ctx: RequestContext) -> list[dict[str, Any]]:
        assert self.signature is not None
        try:
            kwargs = self.signature.bind(variables, ctx)
        except ValidationError:
            raise ResourceNotFound(f"Resource not found: {uri}", data={"uri": uri}) from None
        value = await _invoke(self.fn, kwargs)
        if isinstance(value, list):
            return [v if isinstance(v, dict) else resource_contents(uri, v, self.mime_type) for v in value]
        if isinstance(value, dict) and "uri" in value:
            return [value]
        if isinstance(value, (dict, BaseModel)) or is_dataclass(value):
            return [resource_contents(uri, json.dumps(to_jsonable(value), default=str), self.mime_type or "application/json")]
        return [resource_contents(uri, value, self.mime_type)]


@dataclass
class PromptSpec:
    """A prompt; its function's string parameters are the prompt's arguments."""

    name: str
    fn: Callable[..., Any]
    title: str | None = None
    description: str | None = None
    arguments: list[dict[str, Any]] = field(default_factory=list)
    completions: dict[str, Completer] = field(default_factory=dict)
    signature: _Signature | None = None
    permission_classes: list[type] | None = None

    def definition(self) -> dict[str, Any]:
        out: dict[str, Any] = {"name": self.name}
        if self.title:
            out["title"] = self.title
        if self.description:
            out["description"] = self.description
        if self.arguments:
            out["arguments"] = self.arguments
        return out

    async def render(self, arguments: dict[str, str], ctx: RequestContext) -> dict[str, Any]:
        assert self.signature is not None
        missing = [a["name"] for a in self.arguments if a.get("required") and a["name"] not in arguments]
        if missing:
            raise InvalidParams(f"prompts/get '{self.name}': missing required argument(s): {', '.join(missing)}.")
        try:
            kwargs = self.signature.bind(arguments, ctx)
        except ValidationError as exc:
            raise InvalidParams(f"prompts/get '{self.name}': {_describe_validation_error(exc)}") from None
        value = await _invoke(self.fn, kwargs)
        result: dict[str, Any] = {"messages": _messages(value)}
        if self.description:
            result["description"] = self.description
        return result


def _messages(value: Any) -> list[dict[str, Any]]:
    """A prompt's return value as PromptMessages: str or content is one user message."""
    items = value if isinstance(value, list) else [value]
    messages = []
    for item in items:
        if isinstance(item, dict) and "role" in item:
            messages.append({"role": item["role"], "content": content_dict(item["content"])})
        else:
            messages.append({"role": "user", "content": content_dict(item)})
    return messages


def _prompt_arguments(fn: Callable[..., Any], signature: _Signature, descriptions: dict[str, str] | None) -> list[dict[str, Any]]:
    arguments = []
    for name, info in signature.model.model_fields.items():
        arg: dict[str, Any] = {"name": name, "required": info.is_required()}
        description = (descriptions or {}).get(name) or info.description
        if description:
            arg["description"] = description
        arguments.append(arg)
    return arguments


async def complete_from(source: Completer, value: str, context: dict[str, Any]) -> list[str]:
    """Completion values for ``value`` from ``source``: a callable (given the value, and the other
    arguments' values when it takes two parameters; may be async), or values kept when they start with
    ``value`` (case-insensitive)."""
    if callable(source):
        found = source(value, context) if len(inspect.signature(source).parameters) > 1 else source(value)
        if inspect.isawaitable(found):
            found = await found
        return [str(v) for v in found]
    return [str(v) for v in source if str(v).lower().startswith(value.lower())]


class Registry(Provider):
    """Holds code-registered tools, resources and prompts and serves them as a :class:`Provider`."""

    def __init__(self) -> None:
        self.tools: dict[str, ToolSpec] = {}
        self.resources: dict[str, ResourceSpec] = {}
        self.prompts: dict[str, PromptSpec] = {}

    # -- registration ---------------------------------------------------------------------------
    def add_tool(self, fn: Callable[..., Any], **options: Any) -> ToolSpec:
        spec = ToolSpec.from_function(fn, **options)
        self.tools[spec.name] = spec
        return spec

    def tool(
        self,
        name: str | None = None,
        *,
        title: str | None = None,
        description: str | None = None,
        annotations: dict[str, Any] | None = None,
        input_schema: dict[str, Any] | None = None,
        permission_classes: list[type] | None = None,
        run_in_thread: bool = True,
    ) -> Callable[[F], F]:
        """Decorator: register a function as a tool (name defaults to the function's).

        ``input_schema`` replaces the schema derived from type hints; arguments are then validated
        against it (JSON Schema 2020-12) and passed to the function as keyword arguments.
        ``permission_classes`` (mcp_app.permissions) decide who sees and calls it; ``[AllowAny]`` makes
        it public. Default: ``MCP_APP["DEFAULT_PERMISSION_CLASSES"]`` (signed-in users).

        A sync function runs in Django's thread for sync code, as ``database_sync_to_async`` runs it, so it
        may use the ORM. ``run_in_thread=False`` calls it on the event loop instead, as the official SDK calls
        every sync tool: for a quick function that neither blocks nor uses the database (the hand-off to the
        thread costs more than such a function). One that uses the ORM there fails with Django's
        ``SynchronousOnlyOperation``, logged as such; one that blocks stalls every request of the process.
        """

        def decorator(fn: F) -> F:
            self.add_tool(
                fn,
                name=name,
                title=title,
                description=description,
                annotations=annotations,
                input_schema=input_schema,
                permission_classes=permission_classes,
                run_in_thread=run_in_thread,
            )
            return fn

        return decorator

    def resource(
        self,
        uri: str,
        *,
        name: str | None = None,
        title: str | None = None,
        description: str | None = None,
        mime_type: str | None = None,
        completions: dict[str, Completer] | None = None,
        permission_classes: list[type] | None = None,
        cache_ttl_ms: int | None = None,
        cache_scope: str | None = None,
    ) -> Callable[[F], F]:
        """Decorator: register a resource; a URI with ``{var}`` placeholders makes a template.

        ``cache_ttl_ms`` and ``cache_scope`` ("public" or "private") are the caching hints of its reads in
        MCP 2026-07-28 (default: TTL 0, private). "public" says the content is the same for every caller;
        it is granted only when ``permission_classes`` open the resource to all (``AllowAny``).
        """
        if cache_scope not in (None, *SCOPES):
            raise ValueError(f"resource {uri!r}: cache_scope must be 'public' or 'private', not {cache_scope!r}")
        if cache_ttl_ms is not None and (isinstance(cache_ttl_ms, bool) or not isinstance(cache_ttl_ms, int) or cache_ttl_ms < 0):
            raise ValueError(f"resource {uri!r}: cache_ttl_ms must be an integer >= 0")

        def decorator(fn: F) -> F:
            is_template = bool(_TEMPLATE_VAR.search(uri))
            spec = ResourceSpec(
                uri=uri,
                fn=fn,
                name=name or fn.__name__,
                title=title,
                mime_type=mime_type,
                description=description if description is not None else (inspect.cleandoc(fn.__doc__ or "") or None),
                completions=dict(completions or {}),
                signature=_Signature.of(fn, f"{fn.__name__}Variables"),
                regex=_template_regex(uri) if is_template else None,
                permission_classes=permission_classes,
                cache_ttl_ms=cache_ttl_ms,
                cache_scope=cache_scope,
            )
            self.resources[uri] = spec
            return fn

        return decorator

    def prompt(
        self,
        name: str | None = None,
        *,
        title: str | None = None,
        description: str | None = None,
        arguments: dict[str, str] | None = None,
        completions: dict[str, Completer] | None = None,
        permission_classes: list[type] | None = None,
    ) -> Callable[[F], F]:
        """Decorator: register a prompt; ``arguments`` maps argument names to descriptions."""

        def decorator(fn: F) -> F:
            prompt_name = name or fn.__name__
            if not _NAME_RE.match(prompt_name):
                raise ValueError(f"prompt name {prompt_name!r}: use 1-128 letters, digits, '_', '-' or '.'")
            signature = _Signature.of(fn, f"{prompt_name}Arguments")
            self.prompts[prompt_name] = PromptSpec(
                name=prompt_name,
                fn=fn,
                title=title,
                description=description if description is not None else (inspect.cleandoc(fn.__doc__ or "") or None),
                arguments=_prompt_arguments(fn, signature, arguments),
                completions=dict(completions or {}),
                signature=signature,
                permission_classes=permission_classes,
            )
            return fn

        return decorator

    # -- lookups: the one place resource URIs are matched (the managed provider uses these too) ------
    def resource_specs(self) -> list[ResourceSpec]:
        """Every resource and template, fixed URIs first: a template never shadows a resource
        registered with its exact URI."""
        return sorted(self.resources.values(), key=lambda spec: spec.is_template)

    def find_resource(self, uri: str, specs: Iterable[ResourceSpec] | None = None) -> tuple[ResourceSpec, dict[str, str]]:
        """The resource ``uri`` names and its template variables ({} for a fixed URI), the first match
        among ``specs`` (default: :meth:`resource_specs`; pass a subset in that order, such as the ones
        a caller may read). Raises ``ResourceNotFound`` when none matches."""
        for spec in self.resource_specs() if specs is None else specs:
            variables = spec.match(uri)
            if variables is not None:
                return spec, variables
        raise ResourceNotFound(f"Resource not found: {uri}", data={"uri": uri})

    # -- Provider ---------------------------------------------------------------------------------
    async def list_tools(self, ctx: RequestContext) -> list[dict[str, Any]]:
        return [spec.definition() for spec in self.tools.values()]

    async def call_tool(self, name: str, arguments: dict[str, Any], ctx: RequestContext) -> dict[str, Any]:
        spec = self.tools.get(name)
        if spec is None:
            raise unknown_tool(name)
        return await spec.call(arguments, ctx)

    async def tool_input_schema(self, name: str, ctx: RequestContext) -> dict[str, Any] | None:
        spec = self.tools.get(name)
        return spec.input_schema if spec is not None else None

    async def cache_hint(self, method: str, ctx: RequestContext, *, uri: str | None = None) -> CacheHint:
        """Lists are the same for every caller when every item in them is open to all; a read takes its
        resource's own hint (default private)."""
        return self.code_cache_hint(method, uri)

    def code_cache_hint(self, method: str, uri: str | None = None) -> CacheHint:
        """:meth:`cache_hint` for the code registry's items alone (the managed provider builds on it)."""
        if method == "resources/read":
            try:
                spec, _ = self.find_resource(uri or "")
            except ResourceNotFound:
                return resolve(method, same_for_all=False)
            return resolve(
                method,
                same_for_all=open_to_all(spec.permission_classes),
                ttl_ms=spec.cache_ttl_ms,
                scope=spec.cache_scope or "private",
            )
        items: dict[str, Iterable[Any]] = {
            "tools/list": self.tools.values(),
            "prompts/list": self.prompts.values(),
            "resources/list": [spec for spec in self.resources.values() if not spec.is_template],
            "resources/templates/list": [spec for spec in self.resources.values() if spec.is_template],
        }
        return resolve(method, same_for_all=method in items and all_open(items[method]))

    async def list_resources(self, ctx: RequestContext) -> list[dict[str, Any]]:
        return [spec.definition() for spec in self.resources.values() if not spec.is_template]

    async def list_resource_templates(self, ctx: RequestContext) -> list[dict[str, Any]]:
        return [spec.definition() for spec in self.resources.values() if spec.is_template]

    async def read_resource(self, uri: str, ctx: RequestContext) -> list[dict[str, Any]]:
        spec, variables = self.find_resource(uri)
        return await spec.read(uri, variables, ctx)

    async def list_prompts(self, ctx: RequestContext) -> list[dict[str, Any]]:
        return [spec.definition() for spec in self.prompts.values()]

    async def get_prompt(self, name: str, arguments: dict[str, str], ctx: RequestContext) -> dict[str, Any]:
        spec = self.prompts.get(name)
        if spec is None:
            raise unknown_prompt(name)
        return await spec.render(arguments, ctx)

    async def complete(
        self, ref: dict[str, Any], argument: dict[str, Any], context: dict[str, Any], ctx: RequestContext
    ) -> list[str]:
        completions: dict[str, Completer] | None = None
        if ref.get("type") == "ref/prompt":
            prompt = self.prompts.get(str(ref.get("name")))
            if prompt is None:
                raise InvalidParams(f"completion/complete: unknown prompt '{ref.get('name')}'.")
            completions = prompt.completions
        else:
            resource = self.resources.get(str(ref.get("uri")))
            if resource is None:
                raise InvalidParams(f"completion/complete: unknown resource template '{ref.get('uri')}'.")
            completions = resource.completions
        source = completions.get(argument["name"])
        if source is None:
            return []
        return await complete_from(source, argument.get("value", ""), context.get("arguments") or {})


#: The registry the module-level decorators fill and the default server serves.
default_registry = Registry()
tool = default_registry.tool
resource = default_registry.resource
prompt = default_registry.prompt


def autodiscover() -> None:
    """Import the ``mcp`` module of every installed app, so their decorators register."""
    autodiscover_modules("mcp")
