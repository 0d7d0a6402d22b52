"""Settings for mcp_app, read lazily from the ``MCP_APP`` dict in Django settings.

``from mcp_app.conf import mcp_settings``; ``mcp_settings.PAGE_SIZE``. Unknown keys in ``MCP_APP`` are
reported by the system check ``mcp_app.E001``. Values are cached and dropped on ``setting_changed``
(so ``override_settings(MCP_APP=...)`` works in tests).
"""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.core.signals import setting_changed
from django.dispatch import receiver
from django.utils.module_loading import import_string

DEFAULTS: dict[str, Any] = {
    # Name and version in the initialize answer's serverInfo.
    "SERVER_NAME": "mcp_app",
    "SERVER_VERSION": None,  # None: mcp_app's own version
    "SERVER_TITLE": None,
    "INSTRUCTIONS": None,
    # Import string of the Provider that serves tools/resources/prompts; the default serves the code registry.
    "PROVIDER": "mcp_app.providers.managed.default_provider",
    # URL path of the Streamable HTTP endpoint (mounted by mcp_app.routing).
    "PATH": "/mcp",
    # URL path of the legacy HTTP+SSE stream; its messages endpoint is SSE_PATH + "/messages".
    "SSE_PATH": "/sse",
    # URL path of the health endpoint for load balancers (mcp_app.transports.health): unauthenticated, 200 when
    # the database and the channel layer are reachable, else 503; None: not served.
    "HEALTH_PATH": "/mcp/health",
    # Origins allowed besides the request's own host (browser clients); "*" allows any.
    "ALLOWED_ORIGINS": [],
    # Largest request body accepted, in bytes: bigger bodies get 413 before they are read whole.
    "MAX_BODY_SIZE": 4 * 1024 * 1024,
    # Seconds a request body may take to arrive in full (None: no limit); a body that trickles in longer gets
    # 408. Ours are a few KB, sent at once; 30 s leaves room for slow links. Servers that buffer the body
    # before calling the application (daphne) time it out themselves, if at all (see README).
    "BODY_TIMEOUT": 30,
    # Items per page of every list method.
    "PAGE_SIZE": 100,
    # MCP 2026-07-28 caching hints per cacheable method ("tools/list", "prompts/list", "resources/list",
    # "resources/templates/list", "resources/read", "server/discover"): {"ttl_ms": int, "scope": "public" |
    # "private"}. Unset: TTL 0 (the SDK's Client caches by default, so a positive TTL hides changes from
    # clients that do not listen) and the scope the result's audience allows; "public" is never granted to a
    # result that varies by caller.
    "CACHE_HINTS": {},
    # Seconds a handler waits for the client to answer sampling / elicitation / roots requests.
    "CLIENT_REQUEST_TIMEOUT": 300,
    # MCP 2026-07-28 (multi round-trip requests): seconds a requestState stays valid, i.e. how long the client
    # may take to answer the questions of one round and retry (signed with a key derived from SECRET_KEY).
    "REQUEST_STATE_TTL": 600,
    # Seconds a worker keeps a session in its memory (mcp_app.sessions); the database row stays the source of truth.
    "SESSION_CACHE_TIMEOUT": 300,
    # last_seen is written at most this often (seconds), so a message rarely costs a DB write.
    "SESSION_TOUCH_INTERVAL": 60,
    # Seconds between SSE comments on idle streams, which keep proxies from closing them.
    "SSE_KEEPALIVE_INTERVAL": 15,
    # Milliseconds clients wait before reconnecting a closed SSE stream (the SSE `retry` field).
    "SSE_RETRY_MS": 1000,
    # Streamable HTTP event streams (protocol 2025-03-26 and later) keep their events in the database (StreamEvent)
    # so that a client whose connection dropped resumes with Last-Event-ID on any worker: each event for this
    # many seconds, and at most this many per stream (the oldest go first).
    "STREAM_EVENT_RETENTION_SECONDS": 600,
    "STREAM_EVENT_MAX_PER_STREAM": 1000,
    # Who may call: DRF-style authentication classes, tried in order (see mcp_app.auth).
    "DEFAULT_AUTHENTICATION_CLASSES": ["mcp_app.auth.BearerTokenAuthentication", "mcp_app.auth.SessionAuthentication"],
    # Who may use a tool, prompt or code resource that sets no permission_classes of its own
    # (model exposures default to the model's view permission instead).
    "DEFAULT_PERMISSION_CLASSES": ["mcp_app.permissions.IsAuthenticated"],
    # Requests without credentials: False answers 401; True lets them in as anonymous, to see only what
    # is public (AllowAny).
    "ALLOW_ANONYMOUS": False,
    # Scopes every token (ours or OAuth) must carry.
    "REQUIRED_SCOPES": ["mcp"],
    # OAuth 2.1: issuer URLs of the authorization servers named in the protected resource metadata
    # (/.well-known/oauth-protected-resource); empty: no metadata, bearer tokens from the admin only.
    "OAUTH_AUTHORIZATION_SERVERS": [],
    # Refuse OAuth access tokens that name no resource (RFC 8707); the MCP specification requires
    # tokens issued for this server specifically.
    "OAUTH_REQUIRE_AUDIENCE": True,
    # This server's resource identifier (RFC 8707 audience), compared on scheme, host and port; None: the
    # request's scheme and host name with the port the connection arrived on (never the Host header's) +
    # PATH. Set it in production, above all behind a proxy (check mcp_app.W005; E006 if malformed).
    "RESOURCE_URL": None,
    # tools/call per principal: (calls, seconds); None: unlimited. Over it: 429 with Retry-After.
    "TOOL_CALL_RATE": (120, 60),
    # Every request that costs work (all but ping and initialize; each entry of a batch counts) per
    # principal: (requests, seconds); None: unlimited. Over it: 429 with Retry-After. 600 a minute is ten a
    # second, far above what a person's client sends, well below what one client could use to crowd
    # out the others.
    "REQUEST_RATE": (600, 60),
    # Messages in one JSON-RPC batch (protocol 2025-03-26 only); a larger batch is refused whole (400,
    # -32600). Clients batch a handful of messages; 100 is one page of PAGE_SIZE and bounds one POST's
    # work to what one client may ask at a time.
    "MAX_BATCH_SIZE": 100,
    # Entries of one batch that run at once. Sync handlers (the ORM) share Django's one database thread, so
    # more would not make a batch faster, only make other clients' requests queue behind more of its
    # entries; 2 lets an entry that awaits the network overlap with the next.
    "BATCH_CONCURRENCY": 2,
    # Cache alias counting tool calls and requests; use a shared cache (Redis) for limits across workers.
    "RATE_LIMIT_CACHE": "default",
    # Open sessions and GET streams per principal (streams: per worker). Sessions: at the cap, opening one
    # ends the credential's least recently used session. Streams: over the cap, 429.
    "MAX_SESSIONS_PER_PRINCIPAL": 100,
    "MAX_STREAMS_PER_PRINCIPAL": 20,
    # Seconds without a message after which a session is ended (on access, by every worker's reaper, and by
    # manage.py mcp_reap_sessions).
    "SESSION_IDLE_TIMEOUT": 24 * 3600,
    # Seconds between two rounds of each worker's idle-session reaper (None: off, leave it to cron). Five
    # minutes: an abandoned session lingers at most that much past SESSION_IDLE_TIMEOUT, for one cheap
    # query per worker.
    "SESSION_REAP_INTERVAL": 300,
    # Seconds between a worker's heartbeats (its lease in the database, mcp_app.workers). A worker silent for
    # three intervals is dead: the legacy sessions whose streams it held end, and their POSTs get 404 on any
    # worker. 5 s: a dead worker is known within 15 s, for one small write per worker every 5 s.
    "WORKER_HEARTBEAT_INTERVAL": 5,
    # Seconds a POST /sse/messages waits for the stream's worker to confirm it took the answer (or a probe)
    # before answering 202. A live stream confirms within milliseconds; 2 s absorbs a busy loop or a GC pause
    # without holding a client long. Unconfirmed: the lease is re-read; dead -> 404, alive -> 503.
    "STREAM_ACK_TIMEOUT": 2.0,
    # Resource subscriptions one session may hold.
    "MAX_SUBSCRIPTIONS": 1000,
    # Seconds within which notifications/resources/list_changed is sent at most once per stream (a bulk
    # change of many rows becomes one notification, plus one at the end of the window).
    "LIST_CHANGED_COALESCE_SECONDS": 0.5,
    # Bytes of events that may wait for one open stream whose client is not reading (besides one event of any
    # size, and the connection's own 64 KiB write buffer); past it the stream is closed (a legacy session
    # ends with it) and the ids of the answers left undelivered are logged. None: unbounded.
    "STREAM_BUFFER_BYTES": 1024 * 1024,
    # When the process first builds its server (the first request), freeze the objects alive then (gc.freeze():
    # start-up objects that full garbage collections would otherwise walk again and again, pausing every
    # request; mcp_app.runtime). False leaves the collector as Python ships it, for a site that manages gc itself.
    "GC_FREEZE": True,
    # Under daphne, requests skip Twisted's parsing of POST bodies as HTML forms (request.args, which daphne
    # never reads): an eighth of daphne's CPU per call, and multipart uploads parsed in memory before the
    # application could refuse them (mcp_app.transports.daphne). Needs Twisted 25.5+; False leaves daphne as is.
    "DAPHNE_SKIP_FORM_PARSING": True,
    # Write every tools/call to the audit log (ToolCall), with these argument keys' values redacted
    # (case-insensitive substring match, at any depth).
    "AUDIT_LOG": True,
    # When a call's row is written ahead of the tool (outcome 'started', then its outcome; the tool does not
    # run if the row cannot be written): "unless_read_only" for every tool but those that change nothing (a
    # readOnlyHint tool, data and query tools, unknown names), whose row is written once, whole, before the
    # answer leaves (one commit per call instead of two); "always" for every call.
    "AUDIT_WRITE_AHEAD": "unless_read_only",
    "AUDIT_REDACT_KEYS": [
        "password",
        "passwd",
        "secret",
        "token",
        "api_key",
        "apikey",
        "authorization",
        "cookie",
        "credential",
        "private_key",
    ],
    # Days audit rows are kept; `manage.py mcp_prune_audit` deletes older ones (None: keep forever).
    "AUDIT_RETENTION_DAYS": 90,
    # Most a row stores of a call's arguments (bytes of its JSON, after redaction) and of its error message
    # (characters): larger values are cut, with a marker, so that no caller can grow the log by megabytes.
    "AUDIT_MAX_ARGUMENTS_BYTES": 16 * 1024,
    "AUDIT_MAX_ERROR_CHARS": 2000,
}

IMPORT_STRINGS = {"PROVIDER", "DEFAULT_PERMISSION_CLASSES", "DEFAULT_AUTHENTICATION_CLASSES"}


class MCPSettings:
    """Attribute access to ``settings.MCP_APP`` with :data:`DEFAULTS` filled in."""

    def __init__(self) -> None:
        self._cache: dict[str, Any] = {}

    @property
    def user_settings(self) -> dict[str, Any]:
        return getattr(settings, "MCP_APP", {}) or {}

    def __getattr__(self, name: str) -> Any:
        # Called only for a setting not read since the last reload: the value is then kept as an instance
        # attribute, so that later reads (several per request) are plain attribute lookups.
        if name not in DEFAULTS:
            raise AttributeError(f"Invalid mcp_app setting: {name!r}")
        value = self.user_settings.get(name, DEFAULTS[name])
        if name in IMPORT_STRINGS and isinstance(value, str):
            value = import_string(value)
        elif name in IMPORT_STRINGS and isinstance(value, (list, tuple)):
            value = [import_string(v) if isinstance(v, str) else v for v in value]
        self._cache[name] = value
        setattr(self, name, value)
        return value

    def reload(self) -> None:
        for name in self._cache:
            self.__dict__.pop(name, None)
        self._cache.clear()


mcp_settings = MCPSettings()


#: Django settings whose change (``override_settings`` in tests) drops what was derived from them: the cached
#: values here and the runtime objects (:mod:`mcp_app.runtime`, whose own receiver rebuilds them, so that this
#: module imports nothing of the app).
RELOAD_SETTINGS = frozenset({"MCP_APP", "SECRET_KEY", "ALLOWED_HOSTS", "DEBUG", "CACHES"})


@receiver(setting_changed)
def _reload(*, setting: str, **kwargs: Any) -> None:
    if setting in RELOAD_SETTINGS:
        mcp_settings.reload()
