"""The one rule on credentials: what may never be exposed, whatever an exposure's flags say.

Models that exist to hold credentials (tokens, sessions, OAuth secrets, mcp_app's own bookkeeping) are
never exposable, and a user model's password hash is never served. :func:`credential_problem` decides
it for code exposures, admin rows and the serializers' sources alike; :data:`SENSITIVE_FIELD_RE` flags
field names that merely look like credentials (allowed only with ``allow_sensitive_fields``).

Like every provider module it needs the app registry ready (it imports the auth models).
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Any

from django.conf import settings
from django.contrib.auth.base_user import AbstractBaseUser
from django.core.exceptions import FieldDoesNotExist
from django.db import models

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
