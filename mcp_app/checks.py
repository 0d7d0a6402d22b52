"""System checks for mcp_app (``manage.py check``)."""

from __future__ import annotations

import os
import sys
from typing import Any
from urllib.parse import urlsplit

from channels.routing import ProtocolTypeRouter, URLRouter
from django.apps import apps
from django.conf import settings
from django.core.asgi import ASGIHandler
from django.core.checks import Error, Tags, Warning, register
from django.core.management import get_commands
from django.db import DatabaseError, connections, router
from django.db.models.functions import Now
from django.utils.module_loading import import_string

from .conf import DEFAULTS, mcp_settings
from .limits import ATOMIC_CACHE_BACKENDS
from .models import Worker
from .permissions import AllowAny
from .providers.caching import open_to_all
from .providers.code import default_registry
from .providers.exposures.resource import default_exposures
from .transports.streamable_http import StreamableHTTPConsumer

#: The channel layer that lives in one process's memory: fine for one worker, wrong for several.
IN_MEMORY_LAYER = "channels.layers.InMemoryChannelLayer"
#: The apps whose runserver serves WSGI only (Django's, and staticfiles' which adds static files to it).
WSGI_RUNSERVERS = ("django.core", "django.contrib.staticfiles")


@register(Tags.compatibility)
def check_settings(app_configs: Any = None, **kwargs: Any) -> list[Any]:
    messages: list[Any] = []
    user = getattr(settings, "MCP_APP", {})
    if not isinstance(user, dict):
        return [Error("MCP_APP must be a dict.", hint="Set MCP_APP = {...} in settings.", id="mcp_app.E001")]
    for key in sorted(set(user) - set(DEFAULTS)):
        messages.append(
            Error(
                f"MCP_APP has an unknown key {key!r}.",
                hint=f"Known keys: {', '.join(sorted(DEFAULTS))}.",
                id="mcp_app.E001",
            )
        )
    origins = user.get("ALLOWED_ORIGINS", [])
    if not isinstance(origins, (list, tuple)) or not all(isinstance(o, str) for o in origins):
        messages.append(
            Error(
                "MCP_APP['ALLOWED_ORIGINS'] must be a list of origins such as 'https://example.com'.",
                hint="Use full origins (scheme://host[:port]) or '*'.",
                id="mcp_app.E002",
            )
        )
    for name in (
        "MAX_BODY_SIZE",
        "PAGE_SIZE",
        "AUDIT_MAX_ARGUMENTS_BYTES",
        "AUDIT_MAX_ERROR_CHARS",
        "MAX_BATCH_SIZE",
        "BATCH_CONCURRENCY",
    ):
        value = user.get(name, DEFAULTS[name])
        if not isinstance(value, int) or value < 1:
            messages.append(
                Error(
                    f"MCP_APP[{name!r}] must be a positive integer.", hint=f"The default is {DEFAULTS[name]}.", id="mcp_app.E003"
                )
            )
    ahead = user.get("AUDIT_WRITE_AHEAD", DEFAULTS["AUDIT_WRITE_AHEAD"])
    if ahead not in ("unless_read_only", "always"):
        messages.append(
            Error(
                f"MCP_APP['AUDIT_WRITE_AHEAD'] must be 'unless_read_only' or 'always', not {ahead!r}.",
                hint="'always' writes every call's audit row before its tool runs; the default, 'unless_read_only', "
                "writes the row of a call that changes nothing once, before its answer.",
                id="mcp_app.E003",
            )
        )
    ack = user.get("STREAM_ACK_TIMEOUT", DEFAULTS["STREAM_ACK_TIMEOUT"])
    if isinstance(ack, bool) or not isinstance(ack, (int, float)) or not 0 < ack <= 60:
        messages.append(
            Error(
                "MCP_APP['STREAM_ACK_TIMEOUT'] must be a number of seconds above 0, at most 60.",
                hint=f"The default is {DEFAULTS['STREAM_ACK_TIMEOUT']}.",
                id="mcp_app.E003",
            )
        )
    for name in ("BODY_TIMEOUT", "SESSION_REAP_INTERVAL"):
        value = user.get(name, DEFAULTS[name])
        if value is not None and (isinstance(value, bool) or not isinstance(value, (int, float)) or value <= 0):
            messages.append(
                Error(
                    f"MCP_APP[{name!r}] must be a positive number of seconds, or None (off).",
                    hint=f"The default is {DEFAULTS[name]}.",
                    id="mcp_app.E003",
                )
            )
    buffer = user.get("STREAM_BUFFER_BYTES", DEFAULTS["STREAM_BUFFER_BYTES"])
    if buffer is not None and (isinstance(buffer, bool) or not isinstance(buffer, int) or buffer < 1):
        messages.append(
            Error(
                "MCP_APP['STREAM_BUFFER_BYTES'] must be a positive integer (bytes), or None (unbounded).",
                hint=f"The default is {DEFAULTS['STREAM_BUFFER_BYTES']}.",
                id="mcp_app.E003",
            )
        )
    heartbeat = user.get("WORKER_HEARTBEAT_INTERVAL", DEFAULTS["WORKER_HEARTBEAT_INTERVAL"])
    if isinstance(heartbeat, bool) or not isinstance(heartbeat, (int, float)) or not 0.1 <= heartbeat <= 3600:
        messages.append(
            Error(
                "MCP_APP['WORKER_HEARTBEAT_INTERVAL'] must be a number of seconds from 0.1 to 3600.",
                hint=f"The default is {DEFAULTS['WORKER_HEARTBEAT_INTERVAL']}; a worker silent for three "
                "intervals is taken for dead.",
                id="mcp_app.E003",
            )
        )
    for name in ("TOOL_CALL_RATE", "REQUEST_RATE"):
        value = user.get(name, DEFAULTS[name])
        if value is not None and not (
            isinstance(value, (list, tuple))
            and len(value) == 2
            and all(isinstance(v, (int, float)) and not isinstance(v, bool) and v > 0 for v in value)
        ):
            messages.append(
                Error(
                    f"MCP_APP[{name!r}] must be (requests, seconds), two positive numbers, or None.",
                    hint=f"The default is {DEFAULTS[name]}: {DEFAULTS[name][0]} every {DEFAULTS[name][1]} s.",
                    id="mcp_app.E003",
                )
            )
    messages += _check_cache_hints(user.get("CACHE_HINTS", DEFAULTS["CACHE_HINTS"]))
    return messages


def _check_cache_hints(value: Any) -> list[Any]:
    """``MCP_APP["CACHE_HINTS"]``: cacheable method -> {"ttl_ms": int >= 0, "scope": "public" | "private"}."""
    cacheable = ("server/discover", "tools/list", "prompts/list", "resources/list", "resources/templates/list", "resources/read")
    hint = f'For example {{"tools/list": {{"ttl_ms": 60000, "scope": "private"}}}}; methods: {", ".join(cacheable)}.'
    if not isinstance(value, dict):
        return [Error("MCP_APP['CACHE_HINTS'] must be a dict of method -> hint.", hint=hint, id="mcp_app.E003")]
    messages = []
    for method, entry in value.items():
        ttl = entry.get("ttl_ms", 0) if isinstance(entry, dict) else None
        if (
            method not in cacheable
            or not isinstance(entry, dict)
            or set(entry) - {"ttl_ms", "scope"}
            or isinstance(ttl, bool)
            or not isinstance(ttl, int)
            or ttl < 0
            or entry.get("scope", "private") not in ("public", "private")
        ):
            messages.append(
                Error(f"MCP_APP['CACHE_HINTS'][{method!r}] is not a valid caching hint.", hint=hint, id="mcp_app.E003")
            )
    return messages


@register(Tags.compatibility)
def check_channel_layer(app_configs: Any = None, **kwargs: Any) -> list[Any]:
    layers = getattr(settings, "CHANNEL_LAYERS", None)
    if not layers or "default" not in layers:
        return [
            Warning(
                "No default channel layer is configured, so MCP streams cannot receive notifications "
                "and a client's answer can only reach the worker that asked.",
                hint="Set CHANNEL_LAYERS = {'default': {'BACKEND': 'channels.layers.InMemoryChannelLayer'}} "
                "(one process) or channels_redis (many workers).",
                id="mcp_app.W001",
            )
        ]
    return []


@register(Tags.compatibility)
def check_redis_timeout(app_configs: Any = None, **kwargs: Any) -> list[Any]:
    """channels_redis blocks 5 s waiting for messages; redis-py 8 times reads out after 5 s by default, and
    any read timeout makes redis-py wrap commands in ``wait_for``, which can swallow a cancellation
    (Python 3.11) and leave a closed stream's receive running."""
    layer = (getattr(settings, "CHANNEL_LAYERS", None) or {}).get("default", {})
    if not str(layer.get("BACKEND", "")).startswith("channels_redis."):
        return []
    hosts = (layer.get("CONFIG") or {}).get("hosts") or []
    if hosts and all(isinstance(h, dict) and "socket_timeout" in h and h["socket_timeout"] is None for h in hosts):
        return []
    return [
        Warning(
            "channels_redis hosts without socket_timeout=None: redis-py's default read timeout (5 s) races "
            "channels_redis's 5 s blocking receive, which makes idle receives fail spuriously.",
            hint='Turn the read timeout off: "hosts": [{"address": "redis://127.0.0.1:6379/0", "socket_timeout": None}].',
            id="mcp_app.W003",
        )
    ]


@register(Tags.compatibility)
def check_rate_limit_cache(app_configs: Any = None, **kwargs: Any) -> list[Any]:
    """Rates are counted with the cache's ``incr``, which only some backends do atomically: with the others,
    concurrent requests read the same count and all get through."""
    user = getattr(settings, "MCP_APP", {})
    alias = (user if isinstance(user, dict) else {}).get("RATE_LIMIT_CACHE", DEFAULTS["RATE_LIMIT_CACHE"])
    backend = str((getattr(settings, "CACHES", {}) or {}).get(alias, {}).get("BACKEND", ""))
    if not backend or backend in ATOMIC_CACHE_BACKENDS:
        return []
    return [
        Warning(
            f"MCP_APP['RATE_LIMIT_CACHE'] is the cache {alias!r} ({backend}), whose incr is not atomic (or keeps "
            "nothing): concurrent requests can all pass TOOL_CALL_RATE and REQUEST_RATE.",
            hint="Point RATE_LIMIT_CACHE at a LocMemCache (one process), RedisCache or memcached cache (many workers).",
            id="mcp_app.W006",
        )
    ]


@register(Tags.compatibility)
def check_asgi(app_configs: Any = None, **kwargs: Any) -> list[Any]:
    """ASGI_APPLICATION is set (W002) and sends ``MCP_APP["PATH"]`` to mcp_app (W009): an asgi.py left as
    ``startproject`` wrote it hands /mcp to Django, which answers 404."""
    target = getattr(settings, "ASGI_APPLICATION", None)
    if not target:
        return [
            Warning(
                "ASGI_APPLICATION is not set; the MCP endpoints are ASGI consumers and need an ASGI server.",
                hint="Point ASGI_APPLICATION at an asgi.py that wraps Django with mcp_app.routing.mcp_application().",
                id="mcp_app.W002",
            )
        ]
    hint = (
        "In asgi.py: django_asgi_app = get_asgi_application(), then (after it) from mcp_app.routing import "
        "mcp_application; application = mcp_application(django_asgi_app). See the README, 'Adding mcp_app to your site'."
    )
    try:
        application = import_string(target)
    except Exception as exc:  # whatever the site's module raises: report it rather than crash every command
        return [
            Warning(
                f"ASGI_APPLICATION {target!r} cannot be imported ({type(exc).__name__}: {exc}), so the MCP endpoints "
                "cannot be served.",
                hint=hint,
                id="mcp_app.W009",
            )
        ]
    if routes_to_mcp(application, mcp_settings.PATH) is False:
        return [
            Warning(
                f"ASGI_APPLICATION {target!r} does not route {mcp_settings.PATH} to mcp_app: requests for it reach "
                "Django's own handler (or no route), which answers 404.",
                hint=hint,
                id="mcp_app.W009",
            )
        ]
    return []


def routes_to_mcp(application: Any, path: str, *, depth: int = 0) -> bool | None:
    """Whether an HTTP request for ``path`` reaches mcp_app's Streamable HTTP consumer in ``application``: True,
    False (it reaches Django's handler, or a router without a matching route), or None (an application this
    cannot see through: no warning then). Follows ProtocolTypeRouter, URLRouter (as it matches paths) and
    wrappers that keep the application they wrap in ``inner``, ``application`` or ``app``."""
    if depth > 30:
        return None
    consumer = getattr(application, "consumer_class", None)  # what Channels' as_asgi() records
    if isinstance(consumer, type):
        return True if issubclass(consumer, StreamableHTTPConsumer) else None
    if isinstance(application, ProtocolTypeRouter):
        inner = application.application_mapping.get("http")
        return False if inner is None else routes_to_mcp(inner, path, depth=depth + 1)
    if isinstance(application, URLRouter):
        remaining = path.lstrip("/")
        for route in application.routes:
            match = route.pattern.match(remaining)
            if match:
                return routes_to_mcp(route.callback, match[0], depth=depth + 1)
        return False
    for name in ("inner", "application", "app"):  # middleware (Channels' BaseMiddleware, staticfiles' handler...)
        inner = getattr(application, name, None)
        if inner is not None and inner is not application and callable(inner):
            return routes_to_mcp(inner, path, depth=depth + 1)
    if isinstance(application, ASGIHandler):
        return False
    return None


@register(Tags.compatibility)
def check_runserver(app_configs: Any = None, **kwargs: Any) -> list[Any]:
    """``manage.py runserver`` serves ASGI only when it is daphne's command. Django's own serves WSGI, where /mcp
    is a 404. Checked only while runserver runs, since sites served by daphne or uvicorn directly need no daphne
    app. (daphne listed after django.contrib.staticfiles is daphne's own check, daphne.E001.)"""
    if sys.argv[1:2] != ["runserver"] or apps.is_installed("daphne"):
        return []
    provider = get_commands().get("runserver")
    if provider not in WSGI_RUNSERVERS:  # another app's runserver (an ASGI one, we trust)
        return []
    return [
        Warning(
            f'"daphne" is not in INSTALLED_APPS, so runserver is Django\'s WSGI server: {mcp_settings.PATH} and '
            f"{mcp_settings.SSE_PATH} answer 404 (the MCP endpoints are ASGI consumers).",
            hint='Put "daphne" first in INSTALLED_APPS: its runserver serves ASGI_APPLICATION (static files '
            "included), MCP endpoints and all.",
            id="mcp_app.W008",
        )
    ]


@register(Tags.compatibility)
def check_workers_share_a_layer(app_configs: Any = None, databases: Any = None, **kwargs: Any) -> list[Any]:
    """The in-memory channel layer is one process's: with several workers, a legacy stream's answers, session
    ends and clients' answers never reach the other workers. Several workers are recognised by
    ``WEB_CONCURRENCY`` above 1 (the worker count gunicorn and uvicorn read) or, when the check is given
    databases (``migrate``, ``check --database default``), by more than one live lease in the Worker table
    (workers that have served requests within the last three heartbeats)."""
    layer = (getattr(settings, "CHANNEL_LAYERS", None) or {}).get("default") or {}
    if layer.get("BACKEND") != IN_MEMORY_LAYER:
        return []
    evidence = None
    try:
        concurrency = int(os.environ.get("WEB_CONCURRENCY", "1"))
    except ValueError:
        concurrency = 1
    if concurrency > 1:
        evidence = f"WEB_CONCURRENCY is {concurrency}"
    elif databases and (alias := router.db_for_read(Worker)) in databases:
        try:
            # Looked up first rather than caught: a failed query would abort an enclosing transaction.
            migrated = Worker._meta.db_table in connections[alias].introspection.table_names()
            live = Worker.objects.using(alias).filter(expires__gte=Now()).count() if migrated else 0
        except DatabaseError:  # unreachable (Django's own checks say so): nothing to tell
            live = 0
        if live > 1:
            evidence = f"{live} worker processes hold a live lease in the Worker table"
    if evidence is None:
        return []
    return [
        Warning(
            f"{evidence}, but the channel layer is the in-memory one, which each process has for itself: legacy "
            "streams miss answers handled by another worker, and session ends and clients' answers do not reach "
            "the other workers.",
            hint="Use a shared layer: pip install 'mcp_app[redis]' and CHANNEL_LAYERS with channels_redis (README, "
            "'Many workers and hosts'), or run one worker.",
            id="mcp_app.W010",
        )
    ]


@register(Tags.security)
def check_exposures(app_configs: Any = None, **kwargs: Any) -> list[Any]:
    """Exposures in code must not publish credential-like fields unless they say so."""
    messages: list[Any] = []
    for key, exposure in sorted(default_exposures.exposures.items()):
        problem = exposure.credential_problem()  # credential models and password hashes: never, whatever the flags
        if problem is not None:
            messages.append(
                Error(
                    f"The MCP exposure of {key} is refused: {problem}",
                    hint="Remove it (or the field) from expose(); it is not served.",
                    obj=exposure.model,
                    id="mcp_app.E007",
                )
            )
            continue
        sensitive = exposure.sensitive_fields()
        if sensitive and not exposure.allow_sensitive_fields:
            messages.append(
                Error(
                    f"The MCP exposure of {key} includes {', '.join(sensitive)}, which look like credentials.",
                    hint="Remove them from fields=[...], or pass allow_sensitive_fields=True to expose() if they "
                    "really are safe to show to every caller with read access.",
                    obj=exposure.model,
                    id="mcp_app.E004",
                )
            )
    return messages


@register(Tags.security)
def check_cache_scopes(app_configs: Any = None, **kwargs: Any) -> list[Any]:
    """A resource or exposure asking for ``cache_scope="public"`` whose content varies by caller is served
    ``private`` (MCP 2026-07-28 caching hints): say so, since the setting does not do what it says."""
    messages: list[Any] = []
    for uri, spec in sorted(default_registry.resources.items()):
        if spec.cache_scope == "public" and not open_to_all(spec.permission_classes):
            messages.append(
                Warning(
                    f"The MCP resource {uri} asks for cache_scope='public' but is not open to every caller; it is "
                    "served with cacheScope 'private'.",
                    hint="Use permission_classes=[AllowAny] if its content is the same for everyone, or drop cache_scope.",
                    id="mcp_app.W007",
                )
            )
    for key, exposure in sorted(default_exposures.exposures.items()):
        if exposure.cache_scope == "public" and not exposure.same_for_all:
            messages.append(
                Warning(
                    f"The MCP exposure of {key} asks for cache_scope='public' but its rows depend on the caller "
                    "(permission classes or a per-user queryset); it is served with cacheScope 'private'.",
                    hint="Drop cache_scope, or expose rows that are the same for every caller with AllowAny.",
                    obj=exposure.model,
                    id="mcp_app.W007",
                )
            )
    return messages


@register(Tags.security)
def check_authentication(app_configs: Any = None, **kwargs: Any) -> list[Any]:
    """The authentication settings hold together: OAuth needs its app, and "everything public" is said aloud."""
    messages: list[Any] = []
    classes = [f"{c.__module__}.{c.__qualname__}" for c in mcp_settings.DEFAULT_AUTHENTICATION_CLASSES]
    if "mcp_app.contrib.oauth.OAuth2Authentication" in classes and not apps.is_installed("oauth2_provider"):
        messages.append(
            Error(
                "OAuth2Authentication is configured but django-oauth-toolkit (oauth2_provider) is not installed.",
                hint="pip install 'mcp_app[oauth]' and add 'oauth2_provider' to INSTALLED_APPS, or remove the class.",
                id="mcp_app.E005",
            )
        )
    defaults = mcp_settings.DEFAULT_PERMISSION_CLASSES
    if mcp_settings.ALLOW_ANONYMOUS and any(isinstance(c, type) and issubclass(c, AllowAny) for c in defaults):
        messages.append(
            Warning(
                "ALLOW_ANONYMOUS is on and DEFAULT_PERMISSION_CLASSES allows anyone: every tool, prompt and code "
                "resource is open to callers without credentials.",
                hint="Keep the default IsAuthenticated and mark public items with permission_classes=[AllowAny].",
                id="mcp_app.W004",
            )
        )
    return messages


@register(Tags.security)
def check_resource_url(app_configs: Any = None, **kwargs: Any) -> list[Any]:
    """OAuth access tokens are checked against ``RESOURCE_URL``; without it the audience is derived from the
    request, which production sites (usually behind a proxy that changes the port) should not rely on."""
    url = mcp_settings.RESOURCE_URL
    if url is not None:
        parts = urlsplit(url) if isinstance(url, str) else None
        if parts is None or parts.scheme not in ("http", "https") or not parts.netloc or parts.fragment:
            return [
                Error(
                    f"MCP_APP['RESOURCE_URL'] must be an absolute http(s) URL without a fragment; got {url!r}.",
                    hint="Set RESOURCE_URL to the public URL of the MCP endpoint, e.g. 'https://example.com/mcp'.",
                    id="mcp_app.E006",
                )
            ]
        return []
    classes = [f"{c.__module__}.{c.__qualname__}" for c in mcp_settings.DEFAULT_AUTHENTICATION_CLASSES]
    oauth = mcp_settings.OAUTH_AUTHORIZATION_SERVERS or "mcp_app.contrib.oauth.OAuth2Authentication" in classes
    if oauth and not settings.DEBUG:
        return [
            Warning(
                "OAuth is on without MCP_APP['RESOURCE_URL']: access tokens are checked against an audience taken "
                "from each request (its scheme and Host name, with the port the connection arrived on).",
                hint="Set RESOURCE_URL to the public URL of the MCP endpoint, e.g. 'https://example.com/mcp'. Behind a "
                "proxy that changes the scheme or port, tokens are refused until it is set.",
                id="mcp_app.W005",
            )
        ]
    return []
