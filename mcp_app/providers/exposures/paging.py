"""Keyset pagination: pages that follow the last row's ordering values, never an OFFSET, so that a deep
page costs what the first one does. NULLs sort as the largest value on every database."""

from __future__ import annotations

from typing import Any

from django.db import models
from django.db.models import F, Q

from ...protocol.errors import InvalidParams
from .fields import convert_value


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
