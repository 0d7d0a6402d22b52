"""Serving model exposures to one caller: resources, completions and data tools.

:class:`DataView` is built per request from the exposures in force (code and admin rows) and the caller;
it knows which exposures the caller may read, and every method below runs synchronously in
Django's database thread (the provider wraps them with ``database_sync_to_async``).

Not found and not allowed are the same answer everywhere, so a caller cannot probe for rows or
models it may not read.
"""

from __future__ import annotations

import hashlib
import json
import logging
from dataclasses import dataclass, field
from typing import Any

from django.db import models
from rest_framework.utils.encoders import JSONEncoder

from ...protocol.errors import InvalidParams, ResourceNotFound
from ...protocol.pagination import CursorCodec
from .fields import MAX_VALUE_LENGTH, FilterSpec, check_fixed_filters, split_terms, text_problem
from .paging import keyset_after, keyset_decode, keyset_order, keyset_values
from .resource import ModelResource

logger = logging.getLogger("mcp_app")

#: Most items a list tool returns at once (and its default), so an answer stays readable for a model.
MAX_LIMIT = 100
DEFAULT_LIMIT = 20
#: The annotations of every data tool: they only read.
#: (destructiveHint and idempotentHint are left out: the spec gives them meaning only when readOnlyHint is false.)
_READ_ONLY = {"readOnlyHint": True, "openWorldHint": False}


def dumps(data: Any) -> str:
    """JSON as DRF renders it (dates, decimals, UUIDs), non-ASCII kept readable."""
    return json.dumps(data, cls=JSONEncoder, ensure_ascii=False)


@dataclass
class DataTool:
    """A data tool: generated for an exposure, or defined by a :class:`~mcp_app.models.QueryTool` row."""

    name: str
    exposure: ModelResource
    operation: str  # list | search | get | count
    title: str
    description: str
    caller_filters: list[str] | None = None  # None: every filter of the exposure
    fixed_filters: dict[str, Any] | None = None
    ordering: list[str] | None = None
    max_limit: int = MAX_LIMIT
    generated: bool = False  # an exposure's own tool (not an admin's query tool)
    _definition: dict[str, Any] | None = field(default=None, repr=False, compare=False)

    def definition(self) -> dict[str, Any]:
        """The Tool object for tools/list (built once: it depends only on the configuration). Not to be mutated."""
        if self._definition is None:
            self._definition = self._build_definition()
        return self._definition

    def _build_definition(self) -> dict[str, Any]:
        # Every client reads tools/list on every conversation, so each byte here is paid for over and over:
        # schemas say exactly what is accepted, in patterns rather than one property per key, and descriptions stay short.
        exposure = self.exposure
        props: dict[str, Any] = {}
        required: list[str] = []
        if self.operation == "get":
            props[exposure.variable] = _lookup_schema(exposure)
            required.append(exposure.variable)
        if self.operation == "search" or self.operation == "list" and self.generated and exposure.search_fields:
            props["query"] = {
                "type": "string",
                "minLength": 1,
                "maxLength": MAX_VALUE_LENGTH,
                "description": f"Text to find in {' or '.join(exposure.search_fields)}.",
            }
            if self.operation == "search":
                required.append("query")
        if self.operation in ("list", "search", "count"):
            if self.caller_filters is None and exposure.filter_specs:
                props["filters"] = exposure.filter_schema()
            elif self.caller_filters:
                props["filters"] = exposure.filter_schema(self.caller_filters)
        if self.operation in ("list", "search"):
            if self.ordering is None:
                props["order_by"] = exposure.ordering_schema()
            props["limit"] = {
                "type": "integer",
                "minimum": 1,
                "maximum": self.max_limit,
                "default": min(DEFAULT_LIMIT, self.max_limit),
            }
            props["cursor"] = {"type": "string", "description": "From nextCursor."}
        schema: dict[str, Any] = {"type": "object", "properties": props, "additionalProperties": False}
        if required:
            schema["required"] = required
        out = {
            "name": self.name,
            "title": self.title,
            "description": self.description,
            "inputSchema": schema,
            "annotations": dict(_READ_ONLY),
        }
        if self.operation in ("list", "search"):
            out["outputSchema"] = {
                "type": "object",
                "required": ["items"],
                "properties": {"items": {"type": "array", "items": {"type": "object"}}, "nextCursor": {"type": "string"}},
            }
        elif self.operation == "count":
            out["outputSchema"] = {"type": "object", "required": ["count"], "properties": {"count": {"type": "integer"}}}
        return out


def _lookup_schema(exposure: ModelResource) -> dict[str, Any]:
    return FilterSpec(exposure.variable, exposure.lookup, "exact").schema()


def generated_tools(exposure: ModelResource) -> list[DataTool]:
    """The data tools of an exposure: ``<app>_<model>_list`` (filters, ordering, pages, and a text
    ``query`` over the search fields when it has any) and ``<app>_<model>_get`` (one object by its key).

    Searching is an argument of the list tool rather than a tool of its own: one tool that filters,
    searches and orders at once, and one schema fewer in every client's context."""
    if not exposure.data_tools:
        return []
    plural, noun = exposure.title.lower(), str(exposure.model._meta.verbose_name)
    about = f" {exposure.description}" if exposure.description else ""
    fields = exposure.describe_fields()
    return [
        DataTool(
            f"{exposure.tool_prefix}_list",
            exposure,
            "list",
            f"List {plural}",
            f"{exposure.title} ({fields}) with their URIs.{about}",
            generated=True,
        ),
        DataTool(
            f"{exposure.tool_prefix}_get",
            exposure,
            "get",
            # "one", not "a": names come from verbose names, and "a author" is what an article rule gets wrong.
            f"Get one {noun}",
            f"One {noun} by its {exposure.variable}, with its fields.",
            generated=True,
        ),
    ]


def query_tool(row: Any, exposure: ModelResource) -> DataTool:
    """The tool an admin defined in a :class:`~mcp_app.models.QueryTool` row; InvalidParams when the row
    no longer fits its exposure (a caller filter or an ordering the exposure does not offer: a field left
    the allowlist, a row saved without validation, or a lookup a field type no longer takes, such as a
    range on a choice field). The catalog then logs the tool as not served instead of failing tools/list."""
    caller_filters = list(row.caller_filters or [])
    unknown = [str(key) for key in caller_filters if key not in exposure.filter_specs]
    if unknown:
        raise InvalidParams(f"caller filters {', '.join(unknown)} are not filters of {exposure.key}.")
    return DataTool(
        row.name,
        exposure,
        row.operation,
        row.title or row.name.replace("_", " ").capitalize(),
        row.description or f"{row.get_operation_display().capitalize()} of {exposure.title.lower()}.",
        caller_filters=caller_filters,
        fixed_filters=check_fixed_filters(exposure.model, row.fixed_filters or {}, where="fixed filters"),
        ordering=exposure.parse_ordering(split_terms(row.ordering)) if split_terms(row.ordering) else None,
        max_limit=max(1, min(row.limit, MAX_LIMIT)),
    )


#: Exposures already reported as refused at serve time (each is logged once per process).
_REFUSED_LOGGED: set[tuple[str, str]] = set()


def served_credential_problem(exposure: ModelResource) -> str | None:
    """The credential rule, again, where an exposure is served: a row saved without validation (the ORM,
    a fixture, a data migration) or a subclass that changed its fields after the checks serves nothing.
    The refusal is logged as a warning once per exposure and problem."""
    problem = exposure.credential_problem()
    if problem is not None and (exposure.key, problem) not in _REFUSED_LOGGED:
        _REFUSED_LOGGED.add((exposure.key, problem))
        logger.warning("model exposure %s is not served: %s", exposure.key, problem)
    return problem


class DataView:
    """The exposures as one caller sees them (``user`` None: anonymous)."""

    def __init__(self, readable: dict[str, ModelResource], user: Any, cursors: CursorCodec | None) -> None:
        """``readable``: the exposures the caller passed the permission classes of (the provider checks them).
        ``cursors`` signs and checks the list tools' cursors (the dispatcher's codec, ``ctx.cursors``); None
        when the caller has none, and then a list that needs a cursor raises RuntimeError.

        Exposures that break the credential rule (a credential model, a password field) are dropped here
        whatever their flags, so a row that skipped validation serves nothing: no template, no rows, no
        data tools (the provider lists and runs only the tools of ``self.readable``)."""
        self.user = user
        self.cursors = cursors
        self.readable = {key: e for key, e in readable.items() if served_credential_problem(e) is None}
        self.links: dict[type, ModelResource | None] = {}
        for exposure in self.readable.values():
            self.links.setdefault(exposure.model, exposure)

    def _queryset(self, exposure: ModelResource) -> models.QuerySet[Any]:
        return exposure.get_queryset(self.user)

    # -- resources ----------------------------------------------------------------------------------
    def templates(self) -> list[dict[str, Any]]:
        return [e.template() for e in self.readable.values()]

    def find(self, uri: str) -> tuple[ModelResource, Any] | None:
        """The readable exposure and the converted lookup value of ``uri``; None when not one of ours."""
        for exposure in self.readable.values():
            value = exposure.parse_uri(uri)
            if value is not None:
                return exposure, value
        return None

    def get_object(self, uri: str) -> tuple[ModelResource, Any]:
        found = self.find(uri)
        obj = None
        if found is not None:
            exposure, value = found
            obj = (
                exposure.prefetch(self._queryset(exposure))
                .filter(**{exposure.lookup.attname if exposure.lookup_field != "pk" else "pk": value})
                .first()
            )
        if obj is None:
            # Unknown exposure, unreadable model, row outside the caller's queryset, or no such row: one answer.
            raise ResourceNotFound(f"Resource not found: {uri}", data={"uri": uri})
        return found[0], obj  # type: ignore[index]

    def read(self, uri: str) -> list[dict[str, Any]]:
        exposure, obj = self.get_object(uri)
        data = exposure.serialize(obj, links=self.links)
        return [{"uri": exposure.uri_for(obj), "mimeType": "application/json", "text": dumps(data)}]

    def resources_page(self, position: Any, limit: int) -> tuple[list[dict[str, Any]], Any]:
        """Up to ``limit`` objects of every readable exposure, by key then primary key (keyset: no
        OFFSET, so a deep page costs what the first does). ``position`` is what the previous page
        returned (None: start); returns the items and the next position (None: the end). Exposures with
        ``listed=False`` are left out: their objects are read through the template and the data tools."""
        keys = sorted(key for key, exposure in self.readable.items() if exposure.listed)
        start, after = keys[0] if keys else None, None
        if position is not None:
            if not isinstance(position, dict) or position.get("e") not in keys:
                raise InvalidParams("Invalid cursor: the list changed; start again without a cursor.")
            start = position["e"]
            after = position.get("a")
        items: list[dict[str, Any]] = []
        for key in keys[keys.index(start) :] if start is not None else []:
            room = limit - len(items)
            if room <= 0:  # the page is full before this exposure starts: the next page starts here
                return items, {"e": key, "a": after if key == start else None}
            exposure = self.readable[key]
            queryset = self._queryset(exposure).order_by("pk")
            if key == start and after is not None:
                try:
                    after_pk = exposure.model._meta.pk.to_python(after)
                except Exception:  # noqa: BLE001 - any conversion failure is a bad cursor
                    raise InvalidParams("Invalid cursor: pass back the nextCursor value exactly as received.") from None
                queryset = queryset.filter(pk__gt=after_pk)
            rows = list(queryset[: room + 1])
            items += [exposure.resource(obj) for obj in rows[:room]]
            if len(rows) > room:
                last = rows[room - 1]
                return items, {"e": key, "a": last.pk if isinstance(last.pk, int) else str(last.pk)}
            if len(items) >= limit:
                following = keys[keys.index(key) + 1 :]
                return items, ({"e": following[0], "a": None} if following else None)
        return items, None

    def complete(self, template: str, value: str) -> list[str] | None:
        """Existing keys starting with ``value`` for an exposure's template; None when not ours."""
        for exposure in self.readable.values():
            if exposure.uri_template == template:
                field = exposure.lookup.attname if exposure.lookup_field != "pk" else "pk"
                queryset = self._queryset(exposure)
                if value and text_problem(value[:200]) is not None:
                    return []  # NUL or a lone surrogate: no key starts with it, and the database would refuse it
                if value:
                    queryset = queryset.filter(**{f"{field}__startswith": value[:200]})
                return [str(v) for v in queryset.order_by(field).values_list(field, flat=True)[:101]]
        return None

    # -- data tools ---------------------------------------------------------------------------------
    def run(self, tool: DataTool, arguments: dict[str, Any]) -> dict[str, Any]:
        """Run a data tool; bad arguments raise InvalidParams (-32602) naming what is allowed."""
        exposure = tool.exposure
        accepted = set(tool.definition()["inputSchema"]["properties"])
        unknown = sorted(set(arguments) - accepted)
        if unknown:
            raise InvalidParams(
                f"{tool.name}: unknown argument(s) {', '.join(str(u)[:100] for u in unknown)}; "
                f"it takes {', '.join(sorted(accepted)) or 'none'}.",
                data={"allowed": sorted(accepted)},
            )
        if tool.operation == "get":
            return self._get(tool, arguments)
        queryset = self._queryset(exposure)
        if tool.fixed_filters:
            queryset = queryset.filter(**tool.fixed_filters)
        queryset = exposure.apply_filters(queryset, arguments.get("filters"), allowed=tool.caller_filters)
        if tool.operation == "search" and "query" not in arguments:
            raise InvalidParams(f"{tool.name}: query is required.")
        if "query" in arguments:  # only search tools and searchable list tools accept it (checked above)
            queryset = exposure.search(queryset, arguments["query"])
        if tool.operation == "count":
            count = queryset.count()
            return _result({"count": count})
        return self._list(tool, queryset, arguments)

    def _get(self, tool: DataTool, arguments: dict[str, Any]) -> dict[str, Any]:
        exposure = tool.exposure
        if exposure.variable not in arguments:
            raise InvalidParams(f"{tool.name}: {exposure.variable} is required.")
        value = FilterSpec(exposure.variable, exposure.lookup, "exact").convert(arguments[exposure.variable])
        uri = exposure.uri_for_value(value)
        try:
            _, obj = self.get_object(uri)
        except ResourceNotFound:
            noun = exposure.model._meta.verbose_name
            return {
                "content": [{"type": "text", "text": f"No {noun} with {exposure.variable} {value!r} (or you may not read it)."}],
                "isError": True,
            }
        data = exposure.serialize(obj, links=self.links)
        link = {"type": "resource_link", "uri": data["uri"], "name": exposure.label(obj), "mimeType": "application/json"}
        return {**_result(data), "content": [{"type": "text", "text": dumps(data)}, link]}

    def _list(self, tool: DataTool, queryset: models.QuerySet[Any], arguments: dict[str, Any]) -> dict[str, Any]:
        exposure = tool.exposure
        limit = arguments.get("limit", min(DEFAULT_LIMIT, tool.max_limit))
        if isinstance(limit, bool) or not isinstance(limit, int) or not 1 <= limit <= tool.max_limit:
            raise InvalidParams(f"{tool.name}: limit must be an integer from 1 to {tool.max_limit}.")
        terms = tool.ordering or exposure.parse_ordering(arguments.get("order_by"))
        query_key = self._query_key(tool, arguments, terms)
        cursor = arguments.get("cursor")
        if cursor is not None:
            state = self._cursor_codec().decode(cursor)
            if state.get("k") != f"tool:{tool.name}" or state.get("q") != query_key:
                raise InvalidParams(
                    f"{tool.name}: this cursor belongs to another query; pass the same filters, "
                    "query and order_by as the call that returned it."
                )
            queryset = queryset.filter(keyset_after(exposure.model, terms, keyset_decode(exposure.model, terms, state.get("v"))))
        rows = list(exposure.prefetch(queryset.order_by(*keyset_order(exposure.model, terms)))[: limit + 1])
        page = rows[:limit]
        result: dict[str, Any] = {"items": exposure.serialize(page, links=self.links, many=True)}
        if len(rows) > limit:
            values = keyset_values(exposure.model, terms, page[-1])
            result["nextCursor"] = self._cursor_codec().encode({"k": f"tool:{tool.name}", "q": query_key, "v": values})
        return _result(result)

    def _cursor_codec(self) -> CursorCodec:
        if self.cursors is None:
            raise RuntimeError(
                "This data tool's answer needs a cursor, and the request context has no cursor codec: build "
                "the RequestContext with cursors= (the dispatcher's), or send the request through the dispatcher."
            )
        return self.cursors

    @staticmethod
    def _query_key(tool: DataTool, arguments: dict[str, Any], terms: list[str]) -> str:
        query = [arguments.get("filters"), arguments.get("query"), terms, tool.exposure.fingerprint()]
        return hashlib.sha256(json.dumps(query, sort_keys=True, default=str).encode()).hexdigest()[:16]


def _result(data: dict[str, Any]) -> dict[str, Any]:
    return {"content": [{"type": "text", "text": dumps(data)}], "structuredContent": data}
