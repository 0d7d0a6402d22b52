"""Model querysets exposed as MCP resources and data tools.

Nothing is exposed unless listed, and the fields are an allowlist::

    # myapp/mcp.py
    from mcp_app.resources import expose
    from .models import Book

    expose(Book, fields=["title", "author", "published"], description="The library's catalogue.")

An exposure (a :class:`ModelResource`, from code or from a ``ModelExposure`` row in the admin) gives:

- a resource template ``django://<app_label>/<model_name>/{<lookup_field>}`` whose objects are read as
  JSON through a DRF serializer limited to the allowed fields; related objects appear as resource URIs;
- its objects in ``resources/list``, walked by primary key (keyset pagination: a deep page costs what
  the first one does);
- data tools ``<app>_<model>_list``, ``_search`` and ``_get``, whose arguments name only allowed fields and
  the lookups in :data:`SAFE_LOOKUPS`.

Client input is never handed to ``filter()`` or ``order_by()`` as a field path: every filter key and
ordering is looked up in tables built here from the allowlist, and values are converted by the model
field (``to_python``) before the query runs. Anything else is refused with -32602 naming what is allowed.

Who may read what is decided by the exposure's permission classes (default: the model's Django
``view`` permission) and, row by row, by its queryset hook ``get_queryset(user)``.
"""

from __future__ import annotations

import datetime
import decimal
import hashlib
import json
import logging
import math
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote, unquote

from django.conf import settings
from django.core.exceptions import FieldDoesNotExist, ImproperlyConfigured, ValidationError
from django.core.validators import DecimalValidator
from django.db import connections, models, router
from django.db.models import F, Q
from django.utils import timezone

from .permissions import AllowAny, BasePermission, DjangoModelViewPermission
from .protocol.errors import InvalidParams

logger = logging.getLogger("mcp_app")

#: The only lookups a client may use, in filters of data tools and admin-defined query tools. No
#: ``regex`` (catastrophic patterns), no ``startswith`` family on relations, no traversal (``__`` paths).
SAFE_LOOKUPS = ("exact", "iexact", "icontains", "gt", "gte", "lt", "lte", "in", "isnull")

#: Field names that look like credentials: an exposure including one is refused by the system check
#: ``mcp_app.E004`` unless it sets ``allow_sensitive_fields=True``.
SENSITIVE_FIELD_RE = re.compile(
    r"pass(word|wd)|secret|token|api_?key|private_?key|credential|salt|otp|session_key", re.IGNORECASE
)

#: Models that exist to hold credentials or mcp_app's own bookkeeping, by app label or model label
#: (lower case): never exposable, whatever the flags. Proxies and multi-table children of them too.
CREDENTIAL_APPS: dict[str, str] = {
    # Tokens (hashes), sessions (their ids, bound to callers), subscriptions, the audit log (arguments
    # are redacted by key name only, so values can still be secrets) and the access rules themselves.
    "mcp_app": "mcp_app's own tokens, sessions, audit log and configuration",
    # Applications (client secrets), grants (codes), access, refresh and ID tokens.
    "oauth2_provider": "django-oauth-toolkit's client secrets, codes and tokens",
}
CREDENTIAL_MODELS: dict[str, str] = {
    "sessions.session": "Django's sessions: their data signs browsers in",
    "authtoken.token": "Django REST framework's API keys",
    "authtoken.tokenproxy": "Django REST framework's API keys",
    "oauth2_provider.application": "OAuth client secrets",
    "oauth2_provider.grant": "OAuth authorization codes",
    "oauth2_provider.accesstoken": "OAuth access tokens",
    "oauth2_provider.refreshtoken": "OAuth refresh tokens",
    "oauth2_provider.idtoken": "OpenID Connect ID tokens",
}
#: django-oauth-toolkit's swappable models: a site may replace them, and the replacements hold the same secrets.
_OAUTH_SWAPPABLE = {
    "OAUTH2_PROVIDER_APPLICATION_MODEL": "OAuth client secrets",
    "OAUTH2_PROVIDER_GRANT_MODEL": "OAuth authorization codes",
    "OAUTH2_PROVIDER_ACCESS_TOKEN_MODEL": "OAuth access tokens",
    "OAUTH2_PROVIDER_REFRESH_TOKEN_MODEL": "OAuth refresh tokens",
    "OAUTH2_PROVIDER_ID_TOKEN_MODEL": "OpenID Connect ID tokens",
}


def _credential_reason(label: str) -> str | None:
    """Why the model ``label`` (``app_label.model_name``, any case) holds credentials; None when it does not."""
    label = label.lower()
    swapped = {str(getattr(settings, name, "")).lower(): why for name, why in _OAUTH_SWAPPABLE.items()}
    app_label = label.partition(".")[0]
    return CREDENTIAL_MODELS.get(label) or swapped.get(label) or CREDENTIAL_APPS.get(app_label)


def is_credential_model(model: type[models.Model]) -> bool:
    """Whether ``model`` (or the model it proxies or extends) exists to hold credentials."""
    return _model_credential_reason(model) is not None


def _model_credential_reason(model: type[models.Model]) -> str | None:
    opts = model._meta
    for candidate in (model, opts.concrete_model, *opts.get_parent_list()):
        if candidate is None:
            continue
        reason = _credential_reason(candidate._meta.label_lower)
        if reason is not None:
            return reason
    return None


def is_password_field(model: type[models.Model], name: str) -> bool:
    """Whether ``name`` on ``model`` is a user model's password (hash): never served, by any path."""
    from django.contrib.auth.base_user import AbstractBaseUser  # here: importing it needs the app registry

    try:
        field = model._meta.get_field(name)
    except FieldDoesNotExist:
        return False
    if field.name != "password" or not field.concrete:
        return False
    owner = getattr(field, "model", None) or model
    user_model = str(getattr(settings, "AUTH_USER_MODEL", "auth.User")).lower()
    return (
        issubclass(model, AbstractBaseUser)
        or (isinstance(owner, type) and issubclass(owner, AbstractBaseUser))
        or model._meta.label_lower == user_model
        or model._meta.concrete_model._meta.label_lower == user_model
    )


def credential_problem(model: type[models.Model], fields: Iterable[str] = ()) -> str | None:
    """The one rule on credentials: what is wrong with exposing ``fields`` of ``model``; None when nothing is.

    A model that exists to hold credentials (:data:`CREDENTIAL_MODELS`, :data:`CREDENTIAL_APPS`,
    django-oauth-toolkit's swapped models) is never exposable, and a user model's password field is
    never served, whatever ``allow_sensitive_fields`` says. ``fields`` may hold dotted paths through
    forward relations (a serializer's ``source``); each step is followed.
    """
    label = model._meta.label_lower
    reason = _model_credential_reason(model)
    if reason is not None:
        return f"{label} holds credentials ({reason}); it can never be exposed."
    for path in fields:
        current: Any = model
        parts = str(path).split(".")
        for depth, part in enumerate(parts):
            if is_password_field(current, part):
                return f"{label}: {path!r} is a password hash; it is never exposed, whatever 'allow sensitive fields' says."
            try:
                step = current._meta.get_field(part)
            except FieldDoesNotExist:
                break  # a method or property of the serializer's own: nothing more to follow
            related = getattr(step, "related_model", None)
            if related is None or depth == len(parts) - 1:
                break
            if _model_credential_reason(related) is not None:
                return f"{label}: {path!r} reads from {related._meta.label_lower}, which holds credentials."
            current = related
    return None


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


URI_SCHEME = "django"
#: Most items a list tool returns at once (and its default), so an answer stays readable for a model.
MAX_LIMIT = 100
DEFAULT_LIMIT = 20
#: Bounds on client input that reaches the database as values.
MAX_VALUE_LENGTH = 1000
MAX_IN_VALUES = 100
MAX_ORDERING = 3

_STRING_TYPES = {
    "CharField",
    "TextField",
    "SlugField",
    "EmailField",
    "URLField",
    "GenericIPAddressField",
    "IPAddressField",
    "FilePathField",
}
_INTEGER_TYPES = {
    "AutoField",
    "BigAutoField",
    "SmallAutoField",
    "IntegerField",
    "BigIntegerField",
    "SmallIntegerField",
    "PositiveIntegerField",
    "PositiveBigIntegerField",
    "PositiveSmallIntegerField",
}
_KIND_BY_TYPE = {
    **{t: "string" for t in _STRING_TYPES},
    **{t: "integer" for t in _INTEGER_TYPES},
    "FloatField": "number",
    "DecimalField": "decimal",
    "BooleanField": "boolean",
    "NullBooleanField": "boolean",
    "DateField": "date",
    "DateTimeField": "datetime",
    "TimeField": "time",
    "UUIDField": "uuid",
    "ForeignKey": "relation",
    "OneToOneField": "relation",
    "ManyToManyField": "many",
}
_LOOKUPS_BY_KIND = {
    "string": ("exact", "iexact", "icontains", "in", "gt", "gte", "lt", "lte"),
    "integer": ("exact", "in", "gt", "gte", "lt", "lte"),
    "number": ("exact", "gt", "gte", "lt", "lte"),
    "decimal": ("exact", "in", "gt", "gte", "lt", "lte"),
    "date": ("exact", "in", "gt", "gte", "lt", "lte"),
    "datetime": ("exact", "gt", "gte", "lt", "lte"),
    "time": ("exact", "gt", "gte", "lt", "lte"),
    "uuid": ("exact", "in"),
    "boolean": ("exact",),
    "relation": ("exact", "in"),
}
_ORDERABLE = {"string", "integer", "number", "decimal", "date", "datetime", "time", "uuid", "boolean"}


def _value_schema(kind: str, field: models.Field) -> dict[str, Any]:
    if kind == "relation":
        return _value_schema(_kind(field.target_field), field.target_field)  # type: ignore[attr-defined]
    schema: dict[str, Any] = {
        "string": {"type": "string", "maxLength": MAX_VALUE_LENGTH},
        "integer": {"type": "integer"},
        "number": {"type": "number"},
        "decimal": {"type": ["number", "string"]},
        "boolean": {"type": "boolean"},
        "date": {"type": "string", "format": "date"},
        "datetime": {"type": "string", "format": "date-time"},
        "time": {"type": "string", "format": "time"},
        "uuid": {"type": "string", "format": "uuid"},
    }.get(kind, {"type": "string"})
    if kind == "string" and getattr(field, "choices", None):
        schema = {"type": "string", "enum": [str(value) for value, _label in field.flatchoices]}
    return dict(schema)


def _kind(field: models.Field) -> str:
    """What a field holds, as far as filtering and ordering go ('other': shown, never filtered)."""
    return _KIND_BY_TYPE.get(field.get_internal_type(), "other")


@dataclass(frozen=True)
class FilterSpec:
    """One filter a client may set: ``<field>__<lookup>`` on an allowed field."""

    key: str
    field: models.Field
    lookup: str

    @property
    def kind(self) -> str:
        return _kind(self.field)

    def schema(self) -> dict[str, Any]:
        if self.lookup == "isnull":
            return {"type": "boolean"}
        value = _value_schema(self.kind, self.field)
        if self.lookup == "in":
            return {"type": "array", "items": value, "maxItems": MAX_IN_VALUES}
        return value

    def convert(self, value: Any) -> Any:
        """The client's JSON value as the model field's Python value; InvalidParams when it is not one."""
        if self.lookup == "isnull":
            if not isinstance(value, bool):
                raise InvalidParams(f"filters.{self.key}: expected true or false.")
            return value
        if self.lookup == "in":
            if not isinstance(value, list) or not 1 <= len(value) <= MAX_IN_VALUES:
                raise InvalidParams(f"filters.{self.key}: expected a list of 1 to {MAX_IN_VALUES} values.")
            return [self._one(v) for v in value]
        return self._one(value)

    def _one(self, value: Any) -> Any:
        field = self.field.target_field if self.kind == "relation" else self.field  # type: ignore[attr-defined]
        kind = _kind(field)
        expected = {"integer": int, "number": (int, float), "boolean": bool, "decimal": (int, float, str)}.get(kind, str)
        if isinstance(value, bool) and kind != "boolean" or not isinstance(value, expected):
            raise InvalidParams(f"filters.{self.key}: expected {_describe(kind)}, got {_json_type(value)}.")
        return convert_value(field, value, where=f"filters.{self.key}")


def _integer_range(field: models.Field) -> tuple[int, int]:
    """The values the column of an integer ``field`` can hold, on the database its model is read from.

    The storage type's range, so a positive field still takes ``gt: -1``: the database compares it fine,
    it is only values past the column type that make drivers raise (OverflowError on SQLite)."""
    internal = field.get_internal_type()
    storage = {
        "PositiveSmallIntegerField": "SmallIntegerField",
        "PositiveIntegerField": "IntegerField",
        "PositiveBigIntegerField": "BigIntegerField",
    }.get(internal, internal)
    connection = connections[router.db_for_read(field.model) or "default"]
    try:
        low, high = connection.ops.integer_field_range(storage)
    except KeyError:  # a custom integer type the backend does not know: a 64-bit signed column
        low, high = -(2**63), 2**63 - 1
    # Some backends leave a bound open (None); the driver still needs a 64-bit integer.
    return (low if low is not None else -(2**63)), (high if high is not None else 2**63 - 1)


def _text_problem(value: str, max_length: int | None = MAX_VALUE_LENGTH) -> str | None:
    """Why the database could not take ``value`` as text (None: it can)."""
    if max_length is not None and len(value) > max_length:
        return f"values are limited to {max_length} characters"
    if "\x00" in value:
        return "text may not contain NUL (\\u0000) characters"  # PostgreSQL refuses them in any string
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return "text must be valid Unicode (no unpaired surrogates such as \\ud800)"
    return None


def convert_value(field: models.Field, value: Any, *, where: str, max_length: int | None = MAX_VALUE_LENGTH) -> Any:
    """Client input for ``field`` as the Python value a query can carry, or InvalidParams naming ``where``
    and what to send instead. Everything a driver would choke on is refused here, before any query:
    integers past the column's range, non-finite or oversized numbers, decimals with more digits than the
    column has, dates and times that overflow when converted to UTC, text with NUL or lone surrogates."""
    kind = _kind(field)
    if isinstance(value, str):
        problem = _text_problem(value, max_length)
        if problem is not None:
            raise InvalidParams(f"{where}: {problem}.")
    if kind == "string":
        return value  # icontains and friends take any text; to_python would reject nothing more
    try:
        converted = field.to_python(value)
    except (ValidationError, TypeError, ValueError, ArithmeticError):  # OverflowError, decimal.InvalidOperation
        converted = None
    if converted is None:
        raise InvalidParams(f"{where}: {str(value)[:100]!r} is not {_describe(kind)}.")
    if kind == "integer":
        low, high = _integer_range(field)
        if isinstance(converted, bool) or not isinstance(converted, int) or not low <= converted <= high:
            raise InvalidParams(
                f"{where}: {str(value)[:40]} is out of range; {field.name} takes integers from {low} to {high}.",
                data={"minimum": low, "maximum": high},
            )
    elif kind == "number":
        if not isinstance(converted, float) or not math.isfinite(converted):
            raise InvalidParams(f"{where}: expected a finite number (at most about 1.8e308), got {str(value)[:40]}.")
    elif kind == "decimal":
        if not isinstance(converted, decimal.Decimal) or not converted.is_finite():
            raise InvalidParams(f"{where}: expected a finite decimal number, got {str(value)[:40]}.")
        try:
            DecimalValidator(field.max_digits, field.decimal_places)(converted)  # type: ignore[attr-defined]
        except ValidationError as exc:
            raise InvalidParams(
                f"{where}: {' '.join(exc.messages)} ({field.name} holds up to "
                f"{field.max_digits} digits, {field.decimal_places} after the point)."
            ) from None  # type: ignore[attr-defined]
    elif kind == "datetime":
        converted = _database_datetime(converted, where)
    return converted


def _database_datetime(value: datetime.datetime, where: str) -> datetime.datetime:
    """An aware datetime the database can store: Django converts it to UTC (with USE_TZ) and year 1 or
    9999 plus an offset overflows there, so do it here, where the caller can be told."""
    try:
        if settings.USE_TZ:
            if timezone.is_naive(value):
                value = timezone.make_aware(value)  # in the current time zone, as Django would (without its warning)
            value.astimezone(datetime.UTC)
    except (OverflowError, ValueError):
        raise InvalidParams(
            f"{where}: {value.isoformat()} is out of range once converted to UTC; use a date and time "
            "between 0001-01-02 and 9999-12-30."
        ) from None
    return value


def _describe(kind: str) -> str:
    return {
        "integer": "an integer",
        "number": "a number",
        "decimal": "a decimal number",
        "boolean": "true or false",
        "date": "a date (YYYY-MM-DD)",
        "datetime": "a date and time (ISO 8601)",
        "time": "a time (HH:MM[:ss])",
        "uuid": "a UUID",
    }.get(kind, "a string")


def _json_type(value: Any) -> str:
    if value is None:
        return "null"
    return {bool: "a boolean", int: "a number", float: "a number", str: "a string", list: "a list", dict: "an object"}.get(
        type(value), type(value).__name__
    )


class ModelResource:
    """A model exposed to MCP clients: which rows, which fields, who may read them.

    Subclass and override :meth:`get_queryset` for row-level rules, or pass ``queryset`` (a QuerySet,
    or a callable taking the user and returning one). ``fields`` is required: nothing is shown that
    is not listed. ``permission_classes`` default to the model's Django view permission.
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
        allow_sensitive_fields: bool = False,
        label: Callable[[Any], str] | None = None,
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
        self.allow_sensitive_fields = allow_sensitive_fields
        self._label = label
        opts = model._meta
        self.key = f"{opts.app_label}.{opts.model_name}"
        self.uri_prefix = f"{URI_SCHEME}://{opts.app_label}/{opts.model_name}/"
        self.variable = "pk" if lookup_field == "pk" else lookup_field
        self.uri_template = f"{self.uri_prefix}{{{self.variable}}}"
        self.tool_prefix = f"{opts.app_label}_{opts.model_name}"
        self._model_fields = {name: self._field(name) for name in self.fields}
        self._search_fields = (
            list(search_fields)
            if search_fields is not None
            else [name for name, f in self._model_fields.items() if _kind(f) == "string" and not f.choices]
        )
        for name in self._search_fields:
            if name not in self._model_fields or _kind(self._model_fields[name]) != "string":
                raise ImproperlyConfigured(f"expose({model.__name__}): search field {name!r} must be an allowed text field.")
        self.lookup = self._lookup_model_field()
        self.filter_specs = self._filter_specs()
        self.orderings = self._orderings()
        for term in self.ordering:
            if term not in self.orderings and term.lstrip("-") not in ("pk", opts.pk.name):
                raise ImproperlyConfigured(f"expose({model.__name__}): ordering {term!r} is not an allowed field.")
        self._serializer: type | None = None
        problem = self.credential_problem()  # now the serializer's sources too (a custom one may show anything)
        if problem is not None:
            raise ImproperlyConfigured(f"expose({model.__name__}): {problem}")

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

    def _filter_specs(self) -> dict[str, FilterSpec]:
        specs: dict[str, FilterSpec] = {}
        candidates = dict(self._model_fields)
        candidates.setdefault(self.model._meta.pk.name, self.model._meta.pk)  # type: ignore[arg-type]
        for name, field in candidates.items():
            lookups = list(_LOOKUPS_BY_KIND.get(_kind(field), ()))
            if lookups and field.null:
                lookups.append("isnull")
            for lookup in lookups:
                key = name if lookup == "exact" else f"{name}__{lookup}"
                specs[key] = FilterSpec(key, field, lookup)
        return specs

    def _orderings(self) -> list[str]:
        names = [n for n, f in self._model_fields.items() if _kind(f) in _ORDERABLE]
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

    @property
    def is_public(self) -> bool:
        return any(issubclass(cls, AllowAny) for cls in self.permission_classes)

    # -- rows ---------------------------------------------------------------------------------------
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
            self._serializer = build_serializer(self)
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

    def related_models(self) -> list[type[models.Model]]:
        return [f.related_model for f in self._model_fields.values() if f.is_relation and f.related_model is not None]

    def prefetch(self, queryset: models.QuerySet[Any]) -> models.QuerySet[Any]:
        """Load what serialization needs in bulk: many-to-many relations, and related rows whose
        exposure is looked up by something other than the primary key."""
        many = [n for n, f in self._model_fields.items() if f.many_to_many]
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
        problem = _text_problem(text)
        if problem is not None:
            raise InvalidParams(f"query: {problem}.")
        if not self._search_fields:
            raise InvalidParams(f"{self.key} has no searchable text fields.")
        condition = Q()
        for name in self._search_fields:
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
        keys = list(keys) if keys is not None else list(self.filter_specs)
        return {
            "type": "object",
            "additionalProperties": False,
            "properties": {key: self.filter_specs[key].schema() for key in keys},
            "description": "Conditions that must all hold: <field> (equals) or <field>__<lookup>.",
        }

    def describe_fields(self) -> str:
        return ", ".join(self.fields) or "(the key only)"

    def fingerprint(self) -> str:
        """Changes when what the exposure shows changes (cursors of an older configuration are refused)."""
        state = json.dumps([self.key, self.fields, self.lookup_field, self.ordering], sort_keys=True, default=str)
        return hashlib.sha256(state.encode()).hexdigest()[:12]


def build_serializer(exposure: ModelResource) -> type:
    """A ModelSerializer of the exposure's allowed fields; relations become resource URIs (see LinkField)."""
    from rest_framework import serializers

    class LinkField(serializers.RelatedField):
        """A related object as the URI of its resource (left out when the caller may not read its model)."""

        def __init__(self, *, related_model: type[models.Model], **kwargs: Any) -> None:
            self.related_model = related_model
            kwargs.setdefault("read_only", True)
            super().__init__(**kwargs)

        def _link(self) -> ModelResource | None:
            return self.context.get("mcp_links", {}).get(self.related_model)

        def use_pk_only_optimization(self) -> bool:
            # The URI needs only the key when the related exposure looks objects up by primary key.
            link = self._link()
            return link is None or link.lookup_field == "pk"

        def to_representation(self, value: Any) -> Any:
            link = self._link()
            if link is None:
                return None
            return link.uri_for_value(value.pk if link.lookup_field == "pk" else link.lookup_value(value))

    relation_names = [n for n, f in exposure._model_fields.items() if f.is_relation]
    attrs: dict[str, Any] = {
        name: LinkField(
            related_model=exposure._model_fields[name].related_model,
            many=exposure._model_fields[name].many_to_many,
            read_only=True,
        )
        for name in relation_names
    }

    class Meta:
        model = exposure.model
        fields = list(exposure.fields)

    def to_representation(self: Any, instance: Any) -> dict[str, Any]:
        data = serializers.ModelSerializer.to_representation(self, instance)
        links = self.context.get("mcp_links", {})
        for name in relation_names:
            # The caller may not read the related model: the relation is not shown at all.
            if links.get(exposure._model_fields[name].related_model) is None:
                data.pop(name, None)
        return data

    attrs.update(Meta=Meta, to_representation=to_representation)
    return type(f"{exposure.model.__name__}McpSerializer", (serializers.ModelSerializer,), attrs)


# -- keyset pagination ------------------------------------------------------------------------------------
def keyset_order(model: type[models.Model], terms: list[str]) -> list[Any]:
    """ORDER BY expressions for ``terms`` plus the primary key, NULLs last ascending and first descending
    (NULL sorts as the largest value, on every database)."""
    pk = model._meta.pk.name
    names = [t.lstrip("-") for t in terms]
    if pk not in names and "pk" not in names:
        terms = [*terms, pk]
    out = []
    for term in terms:
        name = pk if term.lstrip("-") == "pk" else term.lstrip("-")
        out.append(F(name).desc(nulls_first=True) if term.startswith("-") else F(name).asc(nulls_last=True))
    return out


def _terms(model: type[models.Model], terms: list[str]) -> list[tuple[str, bool]]:
    pk = model._meta.pk.name
    names = [pk if t.lstrip("-") == "pk" else t.lstrip("-") for t in terms]
    pairs = [(name, term.startswith("-")) for name, term in zip(names, terms, strict=True)]
    if pk not in names:
        pairs.append((pk, False))
    return pairs


def keyset_after(model: type[models.Model], terms: list[str], values: list[Any]) -> Q:
    """The rows after the row with ``values`` in the order :func:`keyset_order` gives."""
    pairs = _terms(model, terms)
    condition = Q(pk__in=[])  # nothing
    equal = Q()
    for (name, descending), value in zip(pairs, values, strict=True):
        if value is None:
            after = ~Q(**{f"{name}__isnull": True}) if descending else Q(pk__in=[])
            same = Q(**{f"{name}__isnull": True})
        else:
            if descending:
                after = Q(**{f"{name}__lt": value})
            else:
                after = Q(**{f"{name}__gt": value}) | Q(**{f"{name}__isnull": True})
            same = Q(**{name: value})
        condition |= equal & after
        equal &= same
    return condition


def keyset_values(model: type[models.Model], terms: list[str], obj: Any) -> list[Any]:
    """The ordering values of ``obj``, JSON-ready, for the next cursor."""
    return [_to_json(getattr(obj, model._meta.get_field(name).attname)) for name, _ in _terms(model, terms)]


def keyset_decode(model: type[models.Model], terms: list[str], raw: Any) -> list[Any]:
    pairs = _terms(model, terms)
    if not isinstance(raw, list) or len(raw) != len(pairs):
        raise InvalidParams("Invalid cursor: pass back the nextCursor value exactly as received.")
    out = []
    for (name, _), value in zip(pairs, raw, strict=True):
        field = model._meta.get_field(name)
        try:
            # Cursors are signed, but their values still go through the same conversion as client input.
            out.append(None if value is None else convert_value(field, value, where="cursor", max_length=None))
        except InvalidParams:
            raise InvalidParams("Invalid cursor: pass back the nextCursor value exactly as received.") from None
    return out


def _to_json(value: Any) -> Any:
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if hasattr(value, "isoformat"):
        return value.isoformat()
    return str(value)


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


def check_fixed_filters(model: type[models.Model], filters: Any, *, where: str) -> dict[str, Any]:
    """Conditions an admin wrote (base filters of an exposure, fixed filters of a query tool) as
    ``filter()`` keyword arguments: ``field`` or ``field__lookup`` on the model's own concrete fields,
    lookups from :data:`SAFE_LOOKUPS`, values converted by the field. InvalidParams says what is wrong."""
    if not isinstance(filters, dict):
        raise InvalidParams(f"{where}: an object of field__lookup: value.")
    out: dict[str, Any] = {}
    for key, value in filters.items():
        name, _, lookup = str(key).partition("__")
        lookup = lookup or "exact"
        try:
            field = model._meta.get_field(name)
        except FieldDoesNotExist:
            field = None
        if field is None or not field.concrete or field.many_to_many or lookup not in SAFE_LOOKUPS:
            raise InvalidParams(
                f"{where}: {key!r} is not a field of {model.__name__} with one of the lookups {', '.join(SAFE_LOOKUPS)}."
            )
        spec = FilterSpec(str(key), field, lookup)  # type: ignore[arg-type]
        if spec.kind not in _LOOKUPS_BY_KIND:
            raise InvalidParams(f"{where}: {name!r} cannot be filtered on (a {field.get_internal_type()}).")
        out[name if lookup == "exact" else f"{name}__{lookup}"] = spec.convert(value)
    return out


def find_exposure(key: str) -> ModelResource | None:
    """The exposure called ``key`` (code first, then an admin row, enabled or not); None when there is none."""
    if key in default_exposures.exposures:
        return default_exposures.exposures[key]
    from .models import ModelExposure

    app_label, _, model_name = key.partition(".")
    row = ModelExposure.objects.filter(content_type__app_label=app_label, content_type__model=model_name).first()
    if row is None:
        return None
    try:
        return row.to_resource()
    except (ImproperlyConfigured, InvalidParams):
        return None


def check_query_tool(row: Any) -> dict[str, str]:
    """Problems of an admin-defined query tool, by form field (empty when it is sound)."""
    exposure = find_exposure(row.exposure)
    if exposure is None:
        return {"exposure": f"No model exposure is called {row.exposure!r} (app_label.model_name)."}
    problems: dict[str, str] = {}
    try:
        check_fixed_filters(exposure.model, row.fixed_filters or {}, where="fixed filters")
    except InvalidParams as exc:
        problems["fixed_filters"] = exc.message
    chosen = row.caller_filters or []
    if not isinstance(chosen, list) or any(k not in exposure.filter_specs for k in chosen):
        problems["caller_filters"] = f"A list of the exposure's filters: {', '.join(exposure.filter_specs)}."
    try:
        exposure.parse_ordering(_split_terms(row.ordering) or None)
    except InvalidParams as exc:
        problems["ordering"] = exc.message
    if row.operation == "search" and not exposure._search_fields:
        problems["operation"] = f"{exposure.key} has no text fields to search."
    return problems


def _split_terms(value: str) -> list[str]:
    return [part.strip() for part in (value or "").split(",") if part.strip()]
