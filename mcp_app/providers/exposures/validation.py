"""Checks of the admin's rows: model exposures and query tools.

The models cannot import the providers (they build on the models), so their ``clean()`` runs these
through :data:`mcp_app.models.clean_hooks`, where :mod:`mcp_app.providers.hooks` registers them. Each
``validate_*`` function raises :class:`~django.core.exceptions.ValidationError` exactly as the model's
``clean()`` did when it held them (the admin form, and any code that calls ``full_clean()``); rows saved
without validation are refused again where exposures are served.
"""

from __future__ import annotations

import re
from typing import Any

from django.core.exceptions import ImproperlyConfigured, ValidationError
from django.utils.translation import gettext_lazy as _

from ...models import ModelExposure, QueryTool
from ...protocol.errors import InvalidParams
from .credentials import credential_problem
from .fields import check_fixed_filters, split_terms
from .resource import ModelResource, default_exposures, find_exposure
from .serving import MAX_LIMIT


def validate_exposure(row: ModelExposure) -> None:
    """Refuse a model exposure row that would expose credentials, is exposed in code already, or does
    not fit its model (unknown fields, bad base filters, credential-like fields not explicitly allowed)."""
    if not row.content_type_id:
        return
    model = row.content_type.model_class()
    problem = credential_problem(model) if model is not None else None
    if problem is not None:
        raise ValidationError({"content_type": problem})
    if row.key in default_exposures.exposures:
        raise ValidationError({"content_type": _("This model is exposed in code (expose()); change it there.")})
    if not isinstance(row.fields, list) or not all(isinstance(f, str) for f in row.fields):
        raise ValidationError({"fields": _("A list of field names.")})
    if not isinstance(row.base_filters, dict):
        raise ValidationError({"base_filters": _('An object of field__lookup: value, e.g. {"is_published": true}.')})
    problem = credential_problem(model, [*row.fields, row.lookup_field or "pk"]) if model is not None else None
    if problem is not None:
        raise ValidationError({"fields": problem})
    try:
        resource = ModelResource.from_row(row)
    except ImproperlyConfigured as exc:
        raise ValidationError(str(exc).split(": ", 1)[-1]) from None
    except InvalidParams as exc:
        raise ValidationError({"base_filters": exc.message}) from None
    sensitive = resource.sensitive_fields()
    if sensitive and not row.allow_sensitive_fields:
        raise ValidationError(
            {
                "fields": _("%(fields)s look like credentials; they are not exposed unless 'allow sensitive fields' is on.")
                % {"fields": ", ".join(sensitive)}
            }
        )


def validate_query_tool(row: QueryTool) -> None:
    """Refuse a query tool row whose name, exposure, filters, ordering, operation or limit is unsound
    (every problem at once, by form field)."""
    problems: dict[str, Any] = dict(check_query_tool(row))
    if not re.fullmatch(r"[A-Za-z0-9_\-]{1,64}", row.name or ""):
        problems["name"] = _("Use 1 to 64 letters, digits, '_' or '-'.")
    if not 1 <= (row.limit or 0) <= MAX_LIMIT:
        problems["limit"] = _("Between 1 and %(max)d.") % {"max": MAX_LIMIT}
    if problems:
        raise ValidationError(problems)


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
        exposure.parse_ordering(split_terms(row.ordering) or None)
    except InvalidParams as exc:
        problems["ordering"] = exc.message
    if row.operation == "search" and not exposure.search_fields:
        problems["operation"] = f"{exposure.key} has no text fields to search."
    return problems
