"""What a model field holds, the filters a client may set on it, and client input as query values.

Client input is never handed to ``filter()`` or ``order_by()`` as a field path: every filter key is
looked up in tables built from an exposure's allowlist (:class:`FilterSpec`), and values are converted by
the model field (``to_python``, :func:`convert_value`) before the query runs. Anything else is refused
with -32602 (:class:`~mcp_app.protocol.errors.InvalidParams`) naming what is allowed.
"""

from __future__ import annotations

import datetime
import decimal
import math
from dataclasses import dataclass
from typing import Any

from django.conf import settings
from django.core.exceptions import FieldDoesNotExist, ValidationError
from django.core.validators import DecimalValidator
from django.db import connections, models, router
from django.utils import timezone

from ...protocol.errors import InvalidParams

#: The only lookups a client may use, in filters of data tools and admin-defined query tools. No
#: ``regex`` (catastrophic patterns), no ``startswith`` family on relations, no traversal (``__`` paths).
SAFE_LOOKUPS = ("exact", "iexact", "icontains", "gt", "gte", "lt", "lte", "in", "isnull")

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
#: The lookups a client may use on a field of each kind (a kind missing here cannot be filtered on).
LOOKUPS_BY_KIND = {
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
#: The lookups on a field with ``choices``: its values are codes from a closed list, so a client picks
#: one or several of them. Ranges (``genre__gt``) would compare the codes alphabetically, which means
#: nothing, and ``icontains`` on a code is better said with ``in``.
CHOICE_LOOKUPS = ("exact", "in")
#: Kinds of fields a client may order by.
ORDERABLE_KINDS = {"string", "integer", "number", "decimal", "date", "datetime", "time", "uuid", "boolean"}


def field_lookups(field: models.Field) -> tuple[str, ...]:
    """The lookups a client may use on ``field`` in a data tool's filters: those of its kind
    (:data:`LOOKUPS_BY_KIND`), :data:`CHOICE_LOOKUPS` when it has choices, plus ``isnull`` when it is
    nullable. Empty: it cannot be filtered on."""
    kind = field_kind(field)
    lookups = LOOKUPS_BY_KIND.get(kind, ())
    if lookups and getattr(field, "choices", None):
        lookups = tuple(lookup for lookup in lookups if lookup in CHOICE_LOOKUPS)
    if lookups and field.null:
        lookups = (*lookups, "isnull")
    return lookups


def value_schema(field: models.Field) -> dict[str, Any]:
    """The JSON Schema of one value of ``field`` as a filter takes it (a relation: its target's key)."""
    return _value_schema(field_kind(field), field)


def _value_schema(kind: str, field: models.Field) -> dict[str, Any]:
    if kind == "relation":
        return _value_schema(field_kind(field.target_field), field.target_field)  # type: ignore[attr-defined]
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
        schema = {"enum": [str(value) for value, _label in field.flatchoices]}  # (strings: "type" adds nothing)
    return dict(schema)


def field_kind(field: models.Field) -> str:
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
        return field_kind(self.field)

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
        kind = field_kind(field)
        expected = {"integer": int, "number": (int, float), "boolean": bool, "decimal": (int, float, str)}.get(kind, str)
        if isinstance(value, bool) and kind != "boolean" or not isinstance(value, expected):
            raise InvalidParams(f"filters.{self.key}: expected {_describe(kind)}, got {_json_type(value)}.")
        return convert_value(field, value, where=f"filters.{self.key}")


def integer_range(field: models.Field) -> tuple[int, int]:
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


def text_problem(value: str, max_length: int | None = MAX_VALUE_LENGTH) -> str | None:
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
    kind = field_kind(field)
    if isinstance(value, str):
        problem = text_problem(value, max_length)
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
        low, high = integer_range(field)
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
        if spec.kind not in LOOKUPS_BY_KIND:
            raise InvalidParams(f"{where}: {name!r} cannot be filtered on (its type is {field.get_internal_type()}).")
        out[name if lookup == "exact" else f"{name}__{lookup}"] = spec.convert(value)
    return out


def split_terms(value: str) -> list[str]:
    """The terms of a comma-separated list an admin typed (an ordering such as ``-published, title``)."""
    return [part.strip() for part in (value or "").split(",") if part.strip()]
