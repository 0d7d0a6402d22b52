"""One model exposure (:class:`ModelResource`) and the exposures registered in code (:func:`expose`).

An exposure, from code or from a ``ModelExposure`` row in the admin, gives:

- a resource template ``django://<app_label>/<model_name>/{<lookup_field>}`` whose objects are read as
  JSON through a DRF serializer limited to the allowed fields; related objects appear as resource URIs;
- its objects in ``resources/list``, walked by primary key (keyset pagination), unless ``listed=False``;
- data tools ``<app>_<model>_list`` (filters, ordering, text search) and ``_get`` (:mod:`.serving`), whose
  arguments name only allowed fields and the lookups of :func:`~.fields.field_lookups`.

Who may read what is decided by the exposure's permission classes (default: the model's Django
``view`` permission) and, row by row, by its queryset hook ``get_queryset(user)``.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Iterable
from typing import Any
from urllib.parse import quote, unquote

from django.core.exceptions import FieldDoesNotExist, ImproperlyConfigured
from django.db import models
from django.db.models import Q

from ...models import ModelExposure
from ...permissions import AllowAny, BasePermission, DjangoModelViewPermission
from ...protocol.errors import InvalidParams
from .credentials import SENSITIVE_FIELD_RE, credential_problem
from .fields import (
    MAX_IN_VALUES,
    MAX_ORDERING,
    MAX_VALUE_LENGTH,
    ORDERABLE_KINDS,
    FilterSpec,
    check_fixed_filters,
    convert_value,
    field_kind,
    field_lookups,
    split_terms,
    text_problem,
    value_schema,
)
from .serializers import build_serializer

URI_SCHEME = "django"


class ModelResource:
    """A model exposed to MCP clients: which rows, which fields, who may read them.

    Subclass and override :meth:`get_queryset` for row-level rules, or pass ``queryset`` (a QuerySet,
    or a callable taking the user and returning one). ``fields`` is required: nothing is shown that
    is not listed. ``permission_classes`` default to the model's Django view permission.
    ``listed=False`` keeps the objects out of ``resources/list`` (for tables too big to page through):
    the template, ``resources/read``, subscriptions and the data tools serve them as before.
    """

    def __init__(
        self,
        model: type[models.Model],
        *,
        fields: Iterable[str],
        queryset: models.QuerySet[Any] | Callable[[Any], models.QuerySet[Any]] | None = None,
        serializer_class: type | None = None,
        lookup_field: str = "pk",
        ordering: Iterable[str] = (),
        filters: dict[str, Any] | None = None,
        search_fields: Iterable[str] | None = None,
        title: str | None = None,
        description: str = "",
        permission_classes: list[type[BasePermission]] | None = None,
        data_tools: bool = True,
        listed: bool = True,
        allow_sensitive_fields: bool = False,
        label: Callable[[Any], str] | None = None,
        cache_ttl_ms: int | None = None,
        cache_scope: str | None = None,
    ) -> None:
        if isinstance(fields, str):
            raise ImproperlyConfigured(f"expose({model.__name__}): fields must be a list of field names, not a string.")
        self.model = model
        self.fields = list(fields)
        # First: whatever else is wrong, credentials are the thing to say (and never to get past).
        problem = credential_problem(model, [*self.fields, lookup_field])
        if problem is not None:
            raise ImproperlyConfigured(f"expose({model.__name__}): {problem}")
        self._queryset = queryset
        self.serializer_class = serializer_class
        self.lookup_field = lookup_field
        self.ordering = list(ordering)
        self.filters = dict(filters or {})
        self.title = title or str(model._meta.verbose_name_plural).capitalize()
        self.description = description
        self.permission_classes = list(permission_classes) if permission_classes is not None else [DjangoModelViewPermission]
        self.data_tools = data_tools
        #: False: the objects stay out of resources/list (a table too big to page through usefully); they
        #: are still reached through the template (resources/read, subscriptions, completion) and the data tools.
        self.listed = listed
        self.allow_sensitive_fields = allow_sensitive_fields
        self._label = label
        if cache_scope not in (None, "public", "private"):
            raise ImproperlyConfigured(f"expose({model.__name__}): cache_scope must be 'public' or 'private'.")
        if cache_ttl_ms is not None and (isinstance(cache_ttl_ms, bool) or not isinstance(cache_ttl_ms, int) or cache_ttl_ms < 0):
            raise ImproperlyConfigured(f"expose({model.__name__}): cache_ttl_ms must be an integer >= 0.")
        #: Caching hints of its objects' resources/read results (MCP 2026-07-28); None: the site's.
        #: "public" is granted only when :attr:`same_for_all` holds.
        self.cache_ttl_ms = cache_ttl_ms
        self.cache_scope = cache_scope
        opts = model._meta
        self.key = f"{opts.app_label}.{opts.model_name}"
        self.uri_prefix = f"{URI_SCHEME}://{opts.app_label}/{opts.model_name}/"
        self.variable = "pk" if lookup_field == "pk" else lookup_field
        self.uri_template = f"{self.uri_prefix}{{{self.variable}}}"
        self.tool_prefix = f"{opts.app_label}_{opts.model_name}"
        self.model_fields = {name: self._field(name) for name in self.fields}
        self.search_fields = (
            list(search_fields)
            if search_fields is not None
            else [name for name, f in self.model_fields.items() if field_kind(f) == "string" and not f.choices]
        )
        for name in self.search_fields:
            if name not in self.model_fields or field_kind(self.model_fields[name]) != "string":
                raise ImproperlyConfigured(f"expose({model.__name__}): search field {name!r} must be an allowed text field.")
        self.lookup = self._lookup_model_field()
        self.filter_specs = self._filter_specs()
        self.orderings = self._orderings()
        for term in self.ordering:
            if term not in self.orderings and term.lstrip("-") not in ("pk", opts.pk.name):
                raise ImproperlyConfigured(f"expose({model.__name__}): ordering {term!r} is not an allowed field.")
        self._serializer: type | None = None
        self._filter_patterns: dict[str, Any] | None = None
        problem = self.credential_problem()  # now the serializer's sources too (a custom one may show anything)
        if problem is not None:
            raise ImproperlyConfigured(f"expose({model.__name__}): {problem}")

    @classmethod
    def from_row(cls, row: ModelExposure) -> ModelResource:
        """The exposure a :class:`~mcp_app.models.ModelExposure` row (the admin's) describes;
        ImproperlyConfigured when the row no longer fits its model (a field was removed), InvalidParams
        when its base filters are unsound."""
        model = row.content_type.model_class()
        if model is None:
            raise ImproperlyConfigured(f"{row}: the model no longer exists.")
        fields = row.fields if isinstance(row.fields, list) else []
        return cls(
            model,
            fields=fields,
            lookup_field=row.lookup_field or "pk",
            ordering=split_terms(row.ordering),
            filters=check_fixed_filters(model, row.base_filters or {}, where="base filters"),
            title=row.title or None,
            description=row.description,
            data_tools=row.data_tools,
            listed=row.listed,
            permission_classes=[AllowAny] if row.public else [DjangoModelViewPermission],
            allow_sensitive_fields=row.allow_sensitive_fields,
        )

    # -- configuration ------------------------------------------------------------------------------
    def _field(self, name: str) -> models.Field:
        try:
            field = self.model._meta.get_field(name)
        except FieldDoesNotExist:
            raise ImproperlyConfigured(f"expose({self.model.__name__}): {name!r} is not a field of the model.") from None
        if not field.concrete or field.auto_created and not field.primary_key:
            raise ImproperlyConfigured(
                f"expose({self.model.__name__}): {name!r} is a reverse relation; only the "
                "model's own fields (and forward relations) can be listed."
            )
        return field  # type: ignore[return-value]

    def _lookup_model_field(self) -> models.Field:
        if self.lookup_field == "pk":
            return self.model._meta.pk  # type: ignore[return-value]
        field = self._field(self.lookup_field)
        if not (field.unique or field.primary_key):
            raise ImproperlyConfigured(f"expose({self.model.__name__}): lookup_field {self.lookup_field!r} must be unique.")
        return field

    def _filter_fields(self) -> dict[str, models.Field]:
        """The fields a client may filter on: the allowed ones and the primary key."""
        candidates = dict(self.model_fields)
        candidates.setdefault(self.model._meta.pk.name, self.model._meta.pk)  # type: ignore[arg-type]
        return {name: field for name, field in candidates.items() if field_lookups(field)}

    def _filter_specs(self) -> dict[str, FilterSpec]:
        specs: dict[str, FilterSpec] = {}
        for name, field in self._filter_fields().items():
            for lookup in field_lookups(field):
                key = name if lookup == "exact" else f"{name}__{lookup}"
                specs[key] = FilterSpec(key, field, lookup)
        return specs

    def _orderings(self) -> list[str]:
        names = [n for n, f in self.model_fields.items() if field_kind(f) in ORDERABLE_KINDS]
        pk = self.model._meta.pk.name
        if pk not in names:
            names.insert(0, pk)
        return [term for n in names for term in (n, f"-{n}")]

    def sensitive_fields(self) -> list[str]:
        """Allowed fields whose names look like credentials (see :data:`SENSITIVE_FIELD_RE`)."""
        names = list(self.fields)
        meta = getattr(self.serializer_class, "Meta", None)
        declared = getattr(meta, "fields", None)
        if isinstance(declared, (list, tuple)):
            names += [n for n in declared if n not in names]
        return [n for n in names if SENSITIVE_FIELD_RE.search(n)]

    def credential_problem(self) -> str | None:
        """:func:`credential_problem` for everything this exposure shows: its model, its fields, its lookup
        field and the sources of its serializer's fields (a custom ``serializer_class`` may add any)."""
        # Remembered per configuration: it runs for every request that builds a DataView.
        state = (self.model, tuple(self.fields), self.lookup_field, self.serializer_class)
        cached = getattr(self, "_credential_checked", None)
        if cached is None or cached[0] != state:
            cached = (state, credential_problem(self.model, [*self.fields, self.lookup_field, *self._serializer_sources()]))
            self._credential_checked = cached
        return cached[1]

    def _serializer_sources(self) -> list[str]:
        if self.serializer_class is None:
            return []  # the built serializer shows exactly self.fields
        try:
            declared = self.serializer_class().fields
        except Exception:  # noqa: BLE001 - a serializer that cannot be built serves nothing either
            return []
        return [str(f.source) for f in declared.values() if getattr(f, "source", None) not in (None, "*")]

    # -- rows ---------------------------------------------------------------------------------------
    @property
    def same_for_all(self) -> bool:
        """Whether every caller sees the same rows: open to all (``AllowAny`` alone), with no per-user
        queryset (a callable ``queryset`` or an overridden :meth:`get_queryset` may filter by user)."""
        classes = self.permission_classes
        return (
            bool(classes)
            and all(cls is AllowAny for cls in classes)
            and not callable(self._queryset)
            and type(self).get_queryset is ModelResource.get_queryset
        )

    def get_queryset(self, user: Any) -> models.QuerySet[Any]:
        """The rows ``user`` may read (None: anonymous). Override for row-level rules."""
        source = self._queryset
        if source is None:
            queryset = self.model._default_manager.all()
        elif isinstance(source, models.QuerySet):
            queryset = source.all()
        else:
            queryset = source(user)
        return queryset.filter(**self.filters) if self.filters else queryset

    def lookup_value(self, obj: Any) -> Any:
        return obj.pk if self.lookup_field == "pk" else getattr(obj, self.lookup_field)

    def uri_for(self, obj: Any) -> str:
        return self.uri_for_value(self.lookup_value(obj))

    def uri_for_value(self, value: Any) -> str:
        return f"{self.uri_prefix}{quote(str(value), safe='')}"

    def parse_uri(self, uri: str) -> Any:
        """The lookup value inside one of this exposure's URIs, converted; None when it is not one."""
        if not uri.startswith(self.uri_prefix):
            return None
        raw = uri[len(self.uri_prefix) :]
        if not raw or "/" in raw or "?" in raw or "#" in raw or len(raw) > 2 * MAX_VALUE_LENGTH:
            return None
        try:
            return convert_value(self.lookup, unquote(raw), where="uri")
        except InvalidParams:  # not a value the key can hold (or the database take): no such resource
            return None

    def label(self, obj: Any) -> str:
        return (self._label(obj) if self._label else str(obj))[:200]

    # -- wire forms ---------------------------------------------------------------------------------
    def template(self) -> dict[str, Any]:
        """The ResourceTemplate for resources/templates/list."""
        out = {"uriTemplate": self.uri_template, "name": self.key, "title": self.title, "mimeType": "application/json"}
        if self.description:
            out["description"] = self.description
        return out

    def resource(self, obj: Any) -> dict[str, Any]:
        """The Resource entry of one object for resources/list."""
        return {"uri": self.uri_for(obj), "name": self.label(obj), "mimeType": "application/json"}

    def serializer(self) -> type:
        """The DRF serializer: the given one, or a ModelSerializer of the allowed fields with relations as URIs."""
        if self.serializer_class is not None:
            return self.serializer_class
        if self._serializer is None:
            self._serializer = build_serializer(self.model, self.fields, self.model_fields)
        return self._serializer

    def serialize(self, objs: Any, *, links: dict[type, ModelResource | None], many: bool = False) -> Any:
        """Objects as JSON-ready dicts; ``links`` maps related models to the exposure the caller may
        read (None: not readable, so the relation is left out)."""
        data = self.serializer()(objs, many=many, context={"mcp_links": links}).data
        rows = data if many else [data]
        objs_list = list(objs) if many else [objs]
        out = []
        for obj, row in zip(objs_list, rows, strict=True):
            row = {"uri": self.uri_for(obj), **dict(row)}
            out.append(row)
        return out if many else out[0]

    def prefetch(self, queryset: models.QuerySet[Any]) -> models.QuerySet[Any]:
        """Load what serialization needs in bulk: many-to-many relations, and related rows whose
        exposure is looked up by something other than the primary key."""
        many = [n for n, f in self.model_fields.items() if f.many_to_many]
        return queryset.prefetch_related(*many) if many else queryset

    # -- data tool helpers --------------------------------------------------------------------------
    def apply_filters(
        self,
        queryset: models.QuerySet[Any],
        filters: Any,
        *,
        allowed: Iterable[str] | None = None,
    ) -> models.QuerySet[Any]:
        """Filter by client input: keys must be in ``allowed`` (default: every filter of the exposure)."""
        if filters is None:
            return queryset
        if not isinstance(filters, dict):
            raise InvalidParams('filters must be an object such as {"title__icontains": "django"}.')
        keys = list(allowed) if allowed is not None else list(self.filter_specs)
        conditions: dict[str, Any] = {}
        for key, value in filters.items():
            if key not in keys:
                raise InvalidParams(
                    f"Unknown filter {str(key)[:100]!r} for {self.key}. Allowed filters: {', '.join(keys)}.",
                    data={"allowed": keys},
                )
            spec = self.filter_specs[key]
            path = spec.field.name if spec.lookup == "exact" else f"{spec.field.name}__{spec.lookup}"
            conditions[path] = spec.convert(value)  # the path comes from our table, never from the client
        return queryset.filter(**conditions)

    def search(self, queryset: models.QuerySet[Any], text: Any) -> models.QuerySet[Any]:
        if not isinstance(text, str) or not text.strip() or len(text) > MAX_VALUE_LENGTH:
            raise InvalidParams(f"query must be a non-empty string of at most {MAX_VALUE_LENGTH} characters.")
        problem = text_problem(text)
        if problem is not None:
            raise InvalidParams(f"query: {problem}.")
        if not self.search_fields:
            raise InvalidParams(f"{self.key} has no searchable text fields.")
        condition = Q()
        for name in self.search_fields:
            condition |= Q(**{f"{name}__icontains": text.strip()})
        return queryset.filter(condition)

    def parse_ordering(self, order_by: Any) -> list[str]:
        """Validated ordering terms (``field`` or ``-field``), defaulting to the exposure's ordering."""
        if order_by is None:
            return list(self.ordering)
        if isinstance(order_by, str):
            order_by = [order_by]
        if not isinstance(order_by, list) or len(order_by) > MAX_ORDERING:
            raise InvalidParams(f"order_by must be a list of up to {MAX_ORDERING} of: {', '.join(self.orderings)}.")
        for term in order_by:
            if term not in self.orderings:
                raise InvalidParams(
                    f"Cannot order {self.key} by {str(term)[:100]!r}. Allowed: {', '.join(self.orderings)}.",
                    data={"allowed": self.orderings},
                )
        return list(order_by)

    def filter_schema(self, keys: Iterable[str] | None = None) -> dict[str, Any]:
        """The JSON Schema of a data tool's ``filters`` argument.

        ``keys`` (a query tool's filters, chosen in the admin): each key is a property of its own. None
        (every filter of the exposure): one ``patternProperties`` entry per kind of value, whose pattern
        names the fields and lookups that take it, e.g. ``^(pages|id)(__(gt|gte|lt|lte))?$`` for integers;
        with ``additionalProperties: false`` the schema accepts exactly the keys of :attr:`filter_specs`
        with values of the right type, in a fraction of the bytes of one property per key (tools/list is
        read by every client on every conversation). The server checks every call against
        :attr:`filter_specs` in any case (:meth:`apply_filters`)."""
        schema: dict[str, Any] = {"type": "object", "additionalProperties": False}
        if keys is not None:
            schema["properties"] = {key: self.filter_specs[key].schema() for key in keys}
            schema["description"] = "Conditions that must all hold."
            return schema
        schema["patternProperties"] = self._cached_filter_patterns()
        schema["description"] = FILTERS_DESCRIPTION
        return schema

    def _cached_filter_patterns(self) -> dict[str, Any]:
        if getattr(self, "_filter_patterns", None) is None:
            self._filter_patterns = filter_patterns(self._filter_fields())
        return self._filter_patterns

    def ordering_schema(self) -> dict[str, Any]:
        """The JSON Schema of ``order_by``: up to :data:`MAX_ORDERING` of :attr:`orderings` (a field,
        '-' in front for descending), as one pattern rather than an enum of every term twice."""
        names = [term for term in self.orderings if not term.startswith("-")]
        return {
            "type": "array",
            "items": {"type": "string", "pattern": f"^-?{_alternation(names)}$"},
            "maxItems": MAX_ORDERING,
            "description": "-field: descending.",
        }

    def describe_fields(self) -> str:
        return ", ".join(self.fields) or "(the key only)"

    def fingerprint(self) -> str:
        """Changes when what the exposure shows changes (cursors of an older configuration are refused)."""
        state = json.dumps([self.key, self.fields, self.lookup_field, self.ordering], sort_keys=True, default=str)
        return hashlib.sha256(state.encode()).hexdigest()[:12]


#: What the keys of a data tool's ``filters`` mean (the patterns say which fields take which lookups).
FILTERS_DESCRIPTION = "All must hold."


def filter_patterns(fields: dict[str, models.Field]) -> dict[str, Any]:
    """``patternProperties`` accepting exactly ``<name>`` and ``<name>__<lookup>`` for the lookups of
    :func:`~.fields.field_lookups`, each with the schema of its value: fields whose values have the same
    schema share an entry, and an entry lists its fields by the lookups they take."""
    scalar: dict[str, dict[tuple[str, ...], list[str]]] = {}  # value schema -> lookups -> field names
    listed: dict[str, list[str]] = {}  # value schema -> the fields that take ``__in``
    nullable: list[str] = []
    schemas: dict[str, dict[str, Any]] = {}
    for name, field in fields.items():
        value = value_schema(field)
        key = json.dumps(value, sort_keys=True)
        schemas[key] = value
        lookups = field_lookups(field)
        others = tuple(lookup for lookup in lookups if lookup not in ("exact", "in", "isnull"))
        scalar.setdefault(key, {}).setdefault(others, []).append(name)
        if "in" in lookups:
            listed.setdefault(key, []).append(name)
        if "isnull" in lookups:
            nullable.append(name)
    out: dict[str, Any] = {}
    for key, by_lookups in scalar.items():
        alternatives = [
            f"^{_alternation(names)}" + (f"(__{_alternation(list(lookups))})?$" if lookups else "$")
            for lookups, names in by_lookups.items()
        ]
        out["|".join(alternatives)] = schemas[key]
        if key in listed:
            out[f"^{_alternation(listed[key])}__in$"] = {"type": "array", "items": schemas[key], "maxItems": MAX_IN_VALUES}
    if nullable:
        out[f"^{_alternation(nullable)}__isnull$"] = {"type": "boolean"}
    return out


def _alternation(names: list[str]) -> str:
    """``a`` or ``(a|b)``: names are identifiers, nothing to escape."""
    return names[0] if len(names) == 1 else f"({'|'.join(names)})"


# -- code registration ------------------------------------------------------------------------------------
class ExposureRegistry:
    """Model exposures registered in code, by key (``app_label.model_name``)."""

    def __init__(self) -> None:
        self.exposures: dict[str, ModelResource] = {}

    def register(self, exposure: ModelResource) -> ModelResource:
        problem = exposure.credential_problem()
        if problem is not None:  # checked again: a subclass may have changed its fields after __init__
            raise ImproperlyConfigured(f"expose({exposure.model.__name__}): {problem}")
        if exposure.key in self.exposures:
            raise ImproperlyConfigured(f"{exposure.key} is exposed twice; expose a model once.")
        self.exposures[exposure.key] = exposure
        return exposure

    def unregister(self, key: str) -> None:
        self.exposures.pop(key, None)


default_exposures = ExposureRegistry()


def expose(
    model: type[models.Model], *, fields: Iterable[str], resource_class: type[ModelResource] = ModelResource, **options: Any
) -> ModelResource:
    """Expose ``model`` to MCP clients (resources and data tools); see :class:`ModelResource` for options."""
    return default_exposures.register(resource_class(model, fields=fields, **options))


def find_exposure(key: str) -> ModelResource | None:
    """The exposure called ``key`` (code first, then an admin row, enabled or not); None when there is none."""
    if key in default_exposures.exposures:
        return default_exposures.exposures[key]
    app_label, _, model_name = key.partition(".")
    row = ModelExposure.objects.filter(content_type__app_label=app_label, content_type__model=model_name).first()
    if row is None:
        return None
    try:
        return ModelResource.from_row(row)
    except (ImproperlyConfigured, InvalidParams):
        return None
