"""The default provider: the code registry as the site's admins configure it in the ORM.

- Tools come from code, from the model exposures (data tools) and from the admin's query tools. Every one
  of them has a :class:`~mcp_app.models.Tool` row (:meth:`ManagedProvider.sync` creates the missing ones)
  whose ``enabled`` switch and access rule (permissions, groups) apply to tools/list and tools/call whatever
  the source; a code tool's row can also override title, description, annotations and input schema, and a
  data tool's its title and description.
- Prompts come from code or are authored in the admin (:class:`~mcp_app.models.Prompt` with its
  arguments and message templates).
- Model exposures (:func:`mcp_app.providers.exposures.resource.expose` in code, :class:`~mcp_app.models.ModelExposure`
  rows) add resources, resource templates and data tools (:mod:`mcp_app.providers.exposures.serving`), plus the admin's
  :class:`~mcp_app.models.QueryTool` rows. A code exposure has a ``ModelExposure`` row of source ``code``
  too, whose ``enabled`` switch serves or withdraws it (its other fields are unused).
- Every tools/call is written to the audit log (:class:`~mcp_app.models.ToolCall`).

Rows are cached per worker and dropped on every worker through the bus when one changes, before
``notifications/*/list_changed`` tells open sessions (see :mod:`mcp_app.notifications`).
A hidden, disabled or orphaned tool answers exactly like an unknown one.

What the provider needs from above arrives with the request: the caller in ``ctx.extra["user"]``, the
dispatcher's cursor codec in ``ctx.cursors``. It never reaches for the runtime objects or the session store.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from dataclasses import dataclass, field
from typing import Any

import jsonschema
from django.contrib.contenttypes.models import ContentType
from django.core.exceptions import ImproperlyConfigured

from ..audit import AuditEntry, AuditWriter, default_writer
from ..availability import OUTAGE_ERRORS, Unavailable, database_unavailable
from ..conf import mcp_settings
from ..content import content_dict
from ..models import ModelExposure, Prompt, QueryTool, Tool
from ..permissions import AllowAny, aallows, default_classes
from ..prompt_templates import PromptTemplateError, render_prompt_template
from ..protocol.context import MemorySession, RequestContext
from ..protocol.errors import InputRequired, InternalError, InvalidParams, McpError, RequestCancelled
from ..protocol.provider import CacheHint, Provider
from .caching import open_to_all, resolve
from .code import (
    Registry,
    ToolSpec,
    complete_from,
    default_registry,
    error_result,
    run_in_django_thread,
    unknown_prompt,
    unknown_tool,
)
from .exposures.resource import ExposureRegistry, ModelResource, default_exposures
from .exposures.serving import DataTool, DataView, generated_tools, query_tool

logger = logging.getLogger("mcp_app")


def caller(ctx: RequestContext) -> Any:
    """The Django user behind a request (None when anonymous)."""
    user = ctx.extra.get("user")
    return user if user is not None and getattr(user, "is_authenticated", False) else None


@dataclass
class _Outcome:
    """What a tools/call came to, as its audit row records it."""

    outcome: str = "ok"
    message: str = ""


def _first_text(result: dict[str, Any]) -> str:
    first = (result.get("content") or [{}])[0]
    return str(first.get("text", "")) if isinstance(first, dict) else ""


def _db(fn: Any) -> Any:
    """``fn`` run in Django's thread (:func:`~mcp_app.providers.code.run_in_django_thread`, as
    ``database_sync_to_async`` runs it), with a database outage raised as
    :class:`~mcp_app.availability.Unavailable`: the client is told to retry (503), not sent a -32603."""

    async def call(*args: Any, **kwargs: Any) -> Any:
        try:
            return await run_in_django_thread(fn, *args, **kwargs)
        except OUTAGE_ERRORS as exc:
            logger.warning("database unavailable (%s: %s)", type(exc).__name__, str(exc).strip()[:300])
            raise database_unavailable() from None

    return call


def _rule(row: Any) -> tuple[list[str], list[int]]:
    perms = [f"{p.content_type.app_label}.{p.codename}" for p in row.required_permissions.all()]
    return perms, [g.id for g in row.allowed_groups.all()]


@dataclass
class Catalog:
    """The tool and prompt rows with their access rules, as loaded from the database."""

    tools: dict[str, tuple[Any, list[str], list[int]]] = field(default_factory=dict)
    prompts: dict[str, tuple[Any, list[str], list[int]]] = field(default_factory=dict)
    #: Model exposures in force (code and enabled admin rows), by key, and their data tools by name.
    exposures: dict[str, ModelResource] = field(default_factory=dict)
    data_tools: dict[str, DataTool] = field(default_factory=dict)
    #: The names in ``data_tools`` that are the admin's query tools (the others are generated).
    query_tools: frozenset[str] = frozenset()
    loaded: float = field(default_factory=time.monotonic)
    #: Whether each code tool's calls get their audit row ahead (ManagedProvider._writes_ahead), as found.
    write_ahead: dict[str, bool] = field(default_factory=dict)

    def exposures_of(self, model: type) -> list[ModelResource]:
        return [e for e in self.exposures.values() if e.model is model]


# A safety net only: every change reaches every worker's copy through the bus, before list_changed goes out.
CATALOG_MAX_AGE = 60.0


class ManagedProvider(Provider):
    """Serves a :class:`~mcp_app.providers.code.Registry` through the admin-managed rows.

    The rows are cached per worker; :mod:`mcp_app.notifications` drops every worker's copy (through
    the bus) when one changes, before it tells clients that the list changed.
    """

    def __init__(
        self, registry: Registry, exposures: ExposureRegistry | None = None, *, audit: AuditWriter | None = None
    ) -> None:
        self.registry = registry
        #: Writes the audit log (``AUDIT_LOG``): the row ahead of each call, its outcome after.
        self.audit = audit if audit is not None else default_writer
        self.exposures = exposures if exposures is not None else ExposureRegistry()
        self._synced = False
        self._catalog: Catalog | None = None
        self._loading: asyncio.Task[Catalog] | None = None  # the catalog load under way (see catalog())

    # -- rows ---------------------------------------------------------------------------------------
    def sync(self, *, exposures: bool = False) -> None:
        """Give everything clients can see a row in the admin, idempotently (admins' edits are kept): a
        ``Tool`` row per code tool, data tool and query tool, a ``Prompt`` row per code prompt, and, with
        ``exposures``, a ``ModelExposure`` row (source ``code``, enabled) per code exposure.

        Run after migrate, by the first catalog load of each process and when the admin lists tools, prompts
        or exposures. Code exposures get their rows only when the admin lists them (``exposures=True``): until
        an admin switches one off it needs no row, and code that counts the admin's exposure rows keeps
        counting those alone. Rows are created (or relabelled with their current source) without signals
        (``bulk_create``, ``update``): no tool, prompt or exposure changes for clients, so nobody is told.
        The rows of query tools that are gone, and of data tools an exposure in force no longer makes, are
        deleted (their post_delete tells clients the tool list changed, which it did when the tool went)."""
        self._sync_code_rows()
        if exposures:
            self._sync_code_exposure_rows()
        exposures_in_force, data_tools, query_tools = self._load_exposures()
        self._sync_data_tool_rows(data_tools, query_tools, set(exposures_in_force))
        self._synced = True

    def _sync_code_rows(self) -> None:
        rows = dict(Tool.objects.values_list("name", "source"))
        Tool.objects.bulk_create([Tool(name=n) for n in self.registry.tools if n not in rows], ignore_conflicts=True)
        # A code tool wins its name (see _data_tools): a row another source made first is the code tool's now.
        taken = [n for n in self.registry.tools if rows.get(n, Tool.Source.CODE) != Tool.Source.CODE]
        if taken:
            Tool.objects.filter(name__in=taken).update(source=Tool.Source.CODE, exposure="")
        prompts = set(Prompt.objects.values_list("name", flat=True))
        Prompt.objects.bulk_create(
            [Prompt(name=n, from_code=True) for n in self.registry.prompts if n not in prompts], ignore_conflicts=True
        )

    def _sync_code_exposure_rows(self) -> None:
        rows = {row.content_type_id: row for row in ModelExposure.objects.all()}
        for exposure in self.exposures.exposures.values():
            content_type = ContentType.objects.get_for_model(exposure.model, for_concrete_model=False)
            row = rows.get(content_type.pk)
            # The row describes the code's options (read-only in the admin, unused when serving), so that the
            # admin's columns and filters (public, data tools, fields) tell the truth about code exposures too.
            described = _described(exposure)
            if row is None:
                # Enabled: the code exposes it; switching it off in the admin withdraws it.
                ModelExposure.objects.bulk_create(
                    [ModelExposure(content_type=content_type, source=ModelExposure.Source.CODE, enabled=True, **described)],
                    ignore_conflicts=True,
                )
            elif row.source != ModelExposure.Source.CODE:
                # An admin row for a model exposed in code since: the code wins (it did before this row
                # was relabelled too), so the row becomes the code exposure's switch, on.
                ModelExposure.objects.filter(pk=row.pk).update(source=ModelExposure.Source.CODE, enabled=True, **described)
            elif any(getattr(row, name) != value for name, value in described.items()):
                ModelExposure.objects.filter(pk=row.pk).update(**described)

    def _sync_data_tool_rows(self, data_tools: dict[str, DataTool], query_tools: frozenset[str], in_force: set[str]) -> None:
        rows = {name: (source, exposure) for name, source, exposure in Tool.objects.values_list("name", "source", "exposure")}
        wanted: dict[str, tuple[str, str, bool]] = {}
        for name, tool in data_tools.items():
            if name not in self.registry.tools:  # a code tool wins a name clash
                source = Tool.Source.QUERY if name in query_tools else Tool.Source.DATA
                wanted[name] = (source, tool.exposure.key, True)
        # Every query tool has a row, served or not: its switch mirrors the query tool's own (Tool.save).
        for name, exposure, enabled in QueryTool.objects.values_list("name", "exposure", "enabled"):
            if name not in self.registry.tools and wanted.get(name, (Tool.Source.QUERY,))[0] == Tool.Source.QUERY:
                wanted[name] = (Tool.Source.QUERY, exposure, enabled)
        Tool.objects.bulk_create(
            [
                Tool(name=name, source=source, exposure=exposure, enabled=enabled)
                for name, (source, exposure, enabled) in wanted.items()
                if name not in rows
            ],
            ignore_conflicts=True,
        )
        for name, (source, exposure, _enabled) in wanted.items():
            if name in rows and rows[name] != (source, exposure):
                Tool.objects.filter(name=name).update(source=source, exposure=exposure)
        # A deleted (or renamed) query tool's row goes with it, and so does the row of a data tool its exposure,
        # in force, no longer makes (a tool renamed or dropped in a new version). A data tool's row stays while
        # its exposure is off or gone, so that its switch and access rule hold when the exposure comes back.
        Tool.objects.filter(source=Tool.Source.QUERY).exclude(name__in=list(wanted)).delete()
        Tool.objects.filter(source=Tool.Source.DATA, exposure__in=sorted(in_force)).exclude(name__in=list(data_tools)).delete()

    def invalidate(self, *args: Any) -> None:
        """Forget the cached rows (a row changed here or on another worker); a load under way may have read
        them before the change, so it is not kept either."""
        self._catalog = None
        self._loading = None

    def _load(self) -> Catalog:
        if not self._synced:
            self.sync()
        exposures, data_tools, query_tools = self._load_exposures()
        tools = Tool.objects.prefetch_related("required_permissions__content_type", "allowed_groups")
        prompts = Prompt.objects.prefetch_related("arguments", "messages", "required_permissions__content_type", "allowed_groups")
        return Catalog(
            tools={row.name: (row, *_rule(row)) for row in tools},
            prompts={row.name: (row, *_rule(row)) for row in prompts},
            exposures=exposures,
            data_tools=data_tools,
            query_tools=query_tools,
        )

    def _load_exposures(self) -> tuple[dict[str, ModelResource], dict[str, DataTool], frozenset[str]]:
        """The exposures in force (code ones not switched off, enabled admin rows), their data tools and the
        query tools by name, and which of those names are query tools."""
        exposures = dict(self.exposures.exposures)
        rows = ModelExposure.objects.filter(enabled=True) | ModelExposure.objects.filter(source=ModelExposure.Source.CODE)
        for row in rows.select_related("content_type"):
            if row.source == ModelExposure.Source.CODE:
                if not row.enabled:
                    exposures.pop(row.key, None)  # switched off in the admin
                continue
            if row.key in exposures:
                continue  # exposed in code: the code wins (the admin refuses such rows)
            try:
                exposures[row.key] = ModelResource.from_row(row)
            except (ImproperlyConfigured, InvalidParams) as exc:  # a field was removed since: skip it, loudly
                logger.warning("model exposure %s is not served: %s", row.key, getattr(exc, "message", exc))
        tools: dict[str, DataTool] = {}
        query_tools: set[str] = set()
        for exposure in exposures.values():
            for tool in generated_tools(exposure):
                tools[tool.name] = tool
        for row in QueryTool.objects.filter(enabled=True):
            exposure = exposures.get(row.exposure)
            if exposure is None or row.name in tools:
                logger.warning(
                    "query tool %s is not served: exposure %s is not enabled, or the name is taken", row.name, row.exposure
                )
                continue
            try:
                tools[row.name] = query_tool(row, exposure)
                query_tools.add(row.name)
            except InvalidParams as exc:
                logger.warning("query tool %s is not served: %s", row.name, exc.message)
        return exposures, tools, frozenset(query_tools)

    async def catalog(self) -> Catalog:
        catalog = self._catalog
        if catalog is not None and time.monotonic() - catalog.loaded <= CATALOG_MAX_AGE:
            return catalog
        # One load at a time per event loop: the calls that arrive while it runs (a cold worker's first burst)
        # wait for it rather than each loading the same rows, and resume together.
        loop = asyncio.get_running_loop()
        loading = self._loading
        if loading is None or loading.get_loop() is not loop or loading.done():
            loading = self._loading = loop.create_task(_db(self._load)())
        # Shielded: one caller's cancellation does not cancel the others' load.
        catalog = await asyncio.shield(loading)
        if self._loading is loading:
            self._catalog = catalog
        return catalog

    @property
    def cached_catalog(self) -> Catalog | None:
        """The catalog as this worker holds it, without loading it (None: not loaded, or invalidated)."""
        return self._catalog

    def catalog_sync(self) -> Catalog:
        """The catalog, for synchronous code (model signals)."""
        catalog = self._catalog
        if catalog is None or time.monotonic() - catalog.loaded > CATALOG_MAX_AGE:
            catalog = self._catalog = self._load()
        return catalog

    async def data_view(self, ctx: RequestContext) -> DataView:
        """The exposures as the caller sees them (permission classes evaluated once per request).

        The data tools' cursors are signed with ``ctx.cursors``, the dispatcher's codec: the dispatcher sets
        it, and a caller that builds its own context (the admin's "try a tool" page) passes the site's.
        Without one, a data tool answers until it would need a cursor (see :class:`DataView`)."""
        catalog = await self.catalog()
        view = ctx.extra.get("_mcp_data_view")
        if view is None or view[0] is not catalog:
            user = caller(ctx)
            # Permission classes run in the event loop unless one needs the database for this user.
            readable = {key: e for key, e in catalog.exposures.items() if await aallows(e.permission_classes, user, e)}
            built = DataView(readable, user, ctx.cursors)
            view = ctx.extra["_mcp_data_view"] = (catalog, built)
        return view[1]

    @staticmethod
    async def _allowed(entry: tuple[Any, list[str], list[int]], user: Any) -> bool:
        row, permissions, groups = entry
        if not permissions and not groups:
            return True
        if user is None:
            return False
        return await _db(row.allows)(user, permissions, groups)

    async def _usable_tools(self, user: Any, name: str | None = None) -> dict[str, Any]:
        """The registered tools this user may use, by name, each with its row (None: no row yet, so
        the code's defaults apply). Disabled, restricted and orphaned tools are left out."""
        catalog = await self.catalog()
        usable = {}
        for tool_name in [name] if name is not None else self.registry.tools:
            if tool_name not in self.registry.tools:
                continue
            spec = self.registry.tools[tool_name]
            if not await aallows(default_classes(spec.permission_classes), user, spec):
                continue
            entry = catalog.tools.get(tool_name)
            if entry is None:
                usable[tool_name] = None
            elif entry[0].enabled and await self._allowed(entry, user):
                usable[tool_name] = entry[0]
        return usable

    async def _usable_tool(self, ctx: RequestContext, user: Any, name: str) -> dict[str, Any]:
        """:meth:`_usable_tools` of the one tool ``name``, worked out once per request: a 2026-07-28
        tools/call asks for the tool's schema (its Mcp-Param headers) before it calls the tool."""
        key = f"_mcp_usable_tool:{name}"
        found = ctx.extra.get(key)
        if found is None or found[0] is not self._catalog:  # first asked, or the rows changed meanwhile
            usable = await self._usable_tools(user, name)
            found = ctx.extra[key] = (self._catalog, usable)
        return found[1]

    async def _prompt_rows(self, user: Any, name: str | None = None) -> dict[str, Any]:
        catalog = await self.catalog()
        entries = dict(catalog.prompts) if name is None else {name: catalog.prompts[name]} if name in catalog.prompts else {}
        # Code prompts without a row yet get a default one (not saved): enabled, open to all.
        for code_name in [name] if name is not None else self.registry.prompts:
            if code_name in self.registry.prompts and code_name not in entries:
                entries[code_name] = (Prompt(name=code_name, from_code=True), [], [])
        usable = {}
        for prompt_name, entry in entries.items():
            row = entry[0]
            if row.from_code and prompt_name not in self.registry.prompts:
                continue  # orphaned
            spec = self.registry.prompts.get(prompt_name) if row.from_code else None
            if not await aallows(default_classes(spec.permission_classes if spec else None), user, row):
                continue
            if row.enabled and await self._allowed(entry, user):
                usable[prompt_name] = row
        return usable

    # -- tools --------------------------------------------------------------------------------------
    def _definition(self, spec: ToolSpec, row: Any) -> dict[str, Any]:
        tool = spec.definition()
        if row is None:
            return tool
        if row.title:
            tool["title"] = row.title
        if row.description:
            tool["description"] = row.description
        hints = row.annotations()
        if hints:
            tool["annotations"] = {**(tool.get("annotations") or {}), **hints}
        if row.input_schema:
            tool["inputSchema"] = row.input_schema
        return tool

    @staticmethod
    def _data_definition(tool: DataTool, catalog: Catalog) -> dict[str, Any]:
        """A data or query tool's definition with its row's title and description, when set."""
        definition = tool.definition()
        entry = catalog.tools.get(tool.name)
        row = entry[0] if entry is not None else None
        if row is None or not (row.title or row.description):
            return definition
        definition = dict(definition)  # the tool's own is shared: never mutated
        if row.title:
            definition["title"] = row.title
        if row.description:
            definition["description"] = row.description
        return definition

    async def list_tools(self, ctx: RequestContext) -> list[dict[str, Any]]:
        usable = await self._usable_tools(caller(ctx))
        tools = [self._definition(self.registry.tools[name], row) for name, row in usable.items()]
        catalog = await self.catalog()
        return tools + [self._data_definition(tool, catalog) for tool in await self._data_tools(ctx)]

    async def tool_input_schema(self, name: str, ctx: RequestContext) -> dict[str, Any] | None:
        """The schema of the one tool ``name`` as this caller sees it (its row's schema wins), looked up by
        name only: None when the caller may not use it (``call_tool`` then refuses it)."""
        usable = await self._usable_tool(ctx, caller(ctx), name)
        if name in usable:
            return self._definition(self.registry.tools[name], usable[name]).get("inputSchema")
        data_tools = await self._data_tools(ctx, name)
        return data_tools[0].definition().get("inputSchema") if data_tools else None

    async def cache_hint(self, method: str, ctx: RequestContext, *, uri: str | None = None) -> CacheHint:
        """The code registry's hint, narrowed by the admin's rows and the exposures: a list is the same for
        every caller only when no row restricts an item (permissions, groups) and no exposure's rows are
        listed (they are filtered per user); a read of an exposure's object takes the exposure's hint."""
        catalog = await self.catalog()
        if method == "resources/read" and uri is not None:
            for exposure in catalog.exposures.values():
                if exposure.parse_uri(uri) is not None:
                    return resolve(
                        method,
                        same_for_all=exposure.same_for_all,
                        ttl_ms=exposure.cache_ttl_ms,
                        scope=exposure.cache_scope or "private",
                    )
            return self.registry.code_cache_hint(method, uri)
        hint = self.registry.code_cache_hint(method, uri)
        if hint.scope == "private":
            return hint
        if method == "tools/list":
            varies = bool(catalog.data_tools) or any(perms or groups for _row, perms, groups in catalog.tools.values())
        elif method == "prompts/list":
            varies = any(
                perms or groups or (not row.from_code and not open_to_all(None))
                for row, perms, groups in catalog.prompts.values()
            )
        else:  # resources/list, resources/templates/list: the exposures' objects and templates depend on the caller
            varies = bool(catalog.exposures)
        return resolve(method, same_for_all=not varies, ttl_ms=hint.ttl_ms)

    async def _data_tools(self, ctx: RequestContext, name: str | None = None) -> list[DataTool]:
        """Data tools over the exposures the caller may read (code tools win a name clash), left out when
        their row is disabled or its access rule refuses the caller."""
        catalog = await self.catalog()
        candidates = (
            list(catalog.data_tools.values())
            if name is None
            else [catalog.data_tools[name]]
            if name in catalog.data_tools
            else []
        )
        candidates = [t for t in candidates if t.name not in self.registry.tools]
        user = caller(ctx)
        kept = []
        for tool in candidates:
            entry = catalog.tools.get(tool.name)  # None: no row yet, so the defaults (enabled, open) apply
            if entry is None or (entry[0].enabled and await self._allowed(entry, user)):
                kept.append(tool)
        candidates = kept
        if not candidates:
            return []
        view = await self.data_view(ctx)
        return [t for t in candidates if t.exposure.key in view.readable]

    async def call_tool(self, name: str, arguments: dict[str, Any], ctx: RequestContext) -> dict[str, Any]:
        """Run a tool (code, data or query tool) with exactly one audit row for the call.

        The row is written before anything runs (outcome ``started``, :meth:`AuditWriter.begin
        <mcp_app.audit.AuditWriter.begin>`); if it cannot be, the call raises
        :class:`~mcp_app.availability.Unavailable` and nothing runs. Afterwards the row gets the outcome
        the client got: ``ok``, ``tool_error`` (an ``isError`` result), ``refused`` (unknown, hidden or
        disabled), ``failed`` (a JSON-RPC error, an unexpected exception, or a cancellation) or
        ``needs_input`` (modern era: it ended asking the client for input; each retry is a call of its own).
        Recording the outcome never changes the answer: a failure there is logged and retried in the background.
        """
        user = caller(ctx)
        entry = await self._begin_audit(ctx, user, name, arguments, ahead=await self._writes_ahead(name))
        started = time.perf_counter()
        record = _Outcome()
        try:
            result = await self._call_tool(name, arguments, ctx, user, record)
        except McpError as exc:
            if record.outcome == "ok":
                record.outcome = "failed"
            record.message = exc.message
            await self._finish_audit(entry, record, started)
            raise
        except (asyncio.CancelledError, RequestCancelled):
            record.outcome, record.message = "failed", "cancelled by the client before it finished"
            with contextlib.suppress(Unavailable):  # no answer is due: a row that could not be written is logged
                await self._finish_audit(entry, record, started)
            raise
        except InputRequired as exc:
            # MCP 2026-07-28: the tool asked the client for input and will run again when the client retries
            # with the answers (a row of its own): neither failed nor done.
            record.outcome, record.message = "needs_input", f"asked the client for: {', '.join(exc.input_requests)}"
            await self._finish_audit(entry, record, started)
            raise
        except Exception as exc:
            # The dispatcher logs the traceback and answers -32603; the row names only the exception's type,
            # since its text may hold data or SQL.
            record.outcome = "failed"
            record.message = f"internal error ({type(exc).__name__}); the server logged the details"
            await self._finish_audit(entry, record, started)
            raise
        await self._finish_audit(entry, record, started)
        return result

    async def _call_tool(
        self, name: str, arguments: dict[str, Any], ctx: RequestContext, user: Any, record: _Outcome
    ) -> dict[str, Any]:
        usable = await self._usable_tool(ctx, user, name)
        if name not in usable and name not in self.registry.tools:
            data_tools = await self._data_tools(ctx, name)
            if data_tools:
                view = await self.data_view(ctx)
                result = await _db(view.run)(data_tools[0], arguments)
                if result.get("isError"):
                    record.outcome, record.message = "tool_error", _first_text(result)
                return result
        if name not in usable:
            record.outcome = "refused"
            shown = name if len(name) <= 100 else f"{name[:100]}…"  # the name is the caller's text: echo a little
            raise unknown_tool(shown)
        spec, row = self.registry.tools[name], usable[name]
        if row is not None and row.input_schema:
            problem = _schema_problem(row.input_schema, arguments)
            if problem:
                record.outcome, record.message = "tool_error", f"Invalid arguments for tool '{name}': {problem}"
                return error_result(record.message)
        result = await spec.call(arguments, ctx)
        if result.get("isError"):
            record.outcome, record.message = "tool_error", _first_text(result)
        return result

    async def _writes_ahead(self, name: str) -> bool:
        """Whether the call of tool ``name`` gets its audit row before it runs (``AUDIT_WRITE_AHEAD``): yes
        unless it changes nothing. A code tool changes nothing when its ``readOnlyHint`` is true (its admin
        row's hint, when set, wins over the code's); data and query tools only read; a name that is no tool
        runs nothing."""
        if mcp_settings.AUDIT_WRITE_AHEAD == "always":
            return True
        spec = self.registry.tools.get(name)
        if spec is None:
            return False  # a data or query tool, or no tool at all (refused): reads, or runs nothing
        catalog = await self.catalog()
        ahead = catalog.write_ahead.get(name)
        if ahead is None:  # found once per catalog: the rows change only with a new one
            entry = catalog.tools.get(name)
            hints = {**(spec.annotations or {}), **(entry[0].annotations() if entry is not None else {})}
            ahead = catalog.write_ahead[name] = hints.get("readOnlyHint") is not True
        return ahead

    async def _begin_audit(
        self, ctx: RequestContext, user: Any, name: str, arguments: dict[str, Any], *, ahead: bool = True
    ) -> AuditEntry | None:
        """The call's audit entry (None when ``AUDIT_LOG`` is off): its row written ahead, or with ``ahead``
        False kept to be written whole when the call ends; raises :class:`~mcp_app.availability.Unavailable`
        when a row written ahead cannot be."""
        if not mcp_settings.AUDIT_LOG:
            return None
        session = ctx.session
        return await self.audit.begin(
            ahead=ahead,
            tool=name,
            arguments=arguments,
            user=user,
            # Only the session store's sessions have a row to refer to; a MemorySession (the admin's
            # "try a tool" page, tests) is not one, and a modern request (2026-07-28 on) has none (empty id).
            session_id=None if isinstance(session, MemorySession) or not session.id else session.id,
            request_id=ctx.request_id,
            via=str(ctx.extra.get("via", "")),
        )

    async def _finish_audit(self, entry: AuditEntry | None, record: _Outcome, started: float) -> None:
        if entry is not None:
            await self.audit.finish(entry, outcome=record.outcome, message=record.message, seconds=time.perf_counter() - started)

    # -- resources: the code registry's, then the model exposures' -------------------------------------
    async def _code_resources(self, ctx: RequestContext) -> list[Any]:
        """The registry's resources and templates the caller may read (fixed URIs first)."""
        user = caller(ctx)
        specs = self.registry.resource_specs()
        return [spec for spec in specs if await aallows(default_classes(spec.permission_classes), user, spec)]

    async def list_resources(self, ctx: RequestContext) -> list[dict[str, Any]]:
        """The code registry's fixed resources only: model rows are listed page by page."""
        return [spec.definition() for spec in await self._code_resources(ctx) if not spec.is_template]

    async def _read_code_resource(self, uri: str, ctx: RequestContext) -> list[dict[str, Any]]:
        spec, variables = self.registry.find_resource(uri, await self._code_resources(ctx))
        return await spec.read(uri, variables, ctx)

    async def list_resources_page(self, ctx: RequestContext, position: Any, limit: int) -> tuple[list[dict[str, Any]], Any]:
        """The registry's resources first (the base class's offset paging: an int position), then every
        readable exposure's objects by primary key (position ``{"e": key, "a": last pk}``)."""
        items: list[dict[str, Any]] = []
        if not isinstance(position, dict):
            items, following = await super().list_resources_page(ctx, position, limit)
            if following is not None:
                return items, following
            position = None
        view = await self.data_view(ctx)
        more, following = await _db(view.resources_page)(position, limit - len(items))
        return items + more, following

    async def list_resource_templates(self, ctx: RequestContext) -> list[dict[str, Any]]:
        view = await self.data_view(ctx)
        code = [spec.definition() for spec in await self._code_resources(ctx) if spec.is_template]
        return code + view.templates()

    async def read_resource(self, uri: str, ctx: RequestContext) -> list[dict[str, Any]]:
        view = await self.data_view(ctx)
        if view.find(uri) is not None:
            return await _db(view.read)(uri)
        # Not a readable exposure's URI: the registry's, or the same "not found" as a forbidden row gets.
        return await self._read_code_resource(uri, ctx)

    async def check_subscription(self, uri: str, ctx: RequestContext) -> None:
        view = await self.data_view(ctx)
        if view.find(uri) is not None:
            await _db(view.get_object)(uri)
            return
        await self._read_code_resource(uri, ctx)

    # -- prompts --------------------------------------------------------------------------------------
    def _prompt_definition(self, row: Any) -> dict[str, Any]:
        spec = self.registry.prompts.get(row.name) if row.from_code else None
        prompt = spec.definition() if spec else {"name": row.name}
        if row.title:
            prompt["title"] = row.title
        if row.description:
            prompt["description"] = row.description
        if not row.from_code:
            arguments = [
                {"name": a.name, "required": a.required, **({"description": a.description} if a.description else {})}
                for a in row.arguments.all()
            ]
            if arguments:
                prompt["arguments"] = arguments
        return prompt

    async def list_prompts(self, ctx: RequestContext) -> list[dict[str, Any]]:
        rows = await self._prompt_rows(caller(ctx))
        return [self._prompt_definition(row) for row in rows.values()]

    async def get_prompt(self, name: str, arguments: dict[str, str], ctx: RequestContext) -> dict[str, Any]:
        row = (await self._prompt_rows(caller(ctx), name)).get(name)
        if row is None:
            raise unknown_prompt(name)
        if row.from_code:
            result = await self.registry.get_prompt(name, arguments, ctx)
        else:
            result = {"messages": _render(row, arguments)}
        description = row.description or result.get("description")
        return {**result, **({"description": description} if description else {})}

    async def complete(
        self, ref: dict[str, Any], argument: dict[str, Any], context: dict[str, Any], ctx: RequestContext
    ) -> list[str]:
        if ref.get("type") == "ref/prompt":
            name = str(ref.get("name"))
            row = (await self._prompt_rows(caller(ctx), name)).get(name)
            if row is None:
                raise InvalidParams(f"completion/complete: unknown prompt '{name}'.")
            if not row.from_code:
                for arg in row.arguments.all():
                    if arg.name == argument["name"]:
                        return await complete_from(arg.completion_values(), argument.get("value", ""), {})
                return []
        if ref.get("type") == "ref/resource":
            view = await self.data_view(ctx)
            values = await _db(view.complete)(str(ref.get("uri")), argument.get("value", ""))
            if values is not None:
                return values
            if not any(spec.uri == ref.get("uri") for spec in await self._code_resources(ctx)):
                raise InvalidParams(f"completion/complete: unknown resource template '{ref.get('uri')}'.")
        return await self.registry.complete(ref, argument, context, ctx)


def _described(exposure: ModelResource) -> dict[str, Any]:
    """A code exposure's options as the fields of its ``ModelExposure`` row (for the admin's eyes only)."""
    return {
        "fields": list(exposure.fields),
        "lookup_field": exposure.lookup_field,
        "ordering": ", ".join(exposure.ordering),
        "base_filters": {key: value for key, value in exposure.filters.items() if _json_value(value)},
        "title": exposure.title,
        "description": exposure.description,
        "data_tools": exposure.data_tools,
        "listed": bool(getattr(exposure, "listed", True)),
        "public": AllowAny in exposure.permission_classes,
        "allow_sensitive_fields": exposure.allow_sensitive_fields,
    }


def _json_value(value: Any) -> bool:
    """Whether ``value`` can be stored in a JSON column as it is (code filters may hold dates, querysets...)."""
    try:
        json.dumps(value, allow_nan=False)
    except (TypeError, ValueError):
        return False
    return True


def _schema_problem(schema: dict[str, Any], arguments: dict[str, Any]) -> str | None:
    error = jsonschema.exceptions.best_match(jsonschema.Draft202012Validator(schema).iter_errors(arguments))
    if error is None:
        return None
    return f"{'.'.join(str(p) for p in error.absolute_path) or 'arguments'}: {error.message}"


def _render(row: Any, arguments: dict[str, str]) -> list[dict[str, Any]]:
    """An admin-authored prompt's messages, rendered with the arguments as their only variables
    (:mod:`mcp_app.prompt_templates`: variables, filters and logic tags).

    A template the restricted engine refuses (saved past validation: a fixture, a migration, the ORM) or
    that fails while rendering answers :class:`InternalError` naming the prompt, and is logged for the site.
    """
    declared = {a.name: a for a in row.arguments.all()}
    missing = [name for name, a in declared.items() if a.required and not arguments.get(name)]
    if missing:
        raise InvalidParams(f"prompts/get '{row.name}': missing required argument(s): {', '.join(missing)}.")
    unknown = sorted(set(arguments) - set(declared))
    if unknown:
        raise InvalidParams(
            f"prompts/get '{row.name}': unknown argument(s) {', '.join(unknown)}; it takes {', '.join(declared) or 'none'}."
        )
    values = {name: arguments.get(name, "") for name in declared}
    messages = []
    for position, message in enumerate(row.messages.all(), 1):
        try:
            text = render_prompt_template(message.template, values)
        except Exception as exc:  # PromptTemplateError, or a filter failing on these arguments
            # No traceback: the cause is the stored template, which the message names.
            logger.warning(
                "prompt %r is not served: message %d: %s",
                row.name,
                position,
                exc if isinstance(exc, PromptTemplateError) else f"{type(exc).__name__}: {exc}",
            )
            raise InternalError(
                f"Prompt '{row.name}' cannot be rendered: one of its message templates is invalid "
                "or uses a tag prompts may not use. An administrator must correct it in the admin; "
                "the server logged the details."
            ) from None
        messages.append({"role": message.role, "content": content_dict(text)})
    return messages


#: The provider mcp_app serves by default (settings: MCP_APP["PROVIDER"]).
default_provider = ManagedProvider(default_registry, default_exposures)
