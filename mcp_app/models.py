"""Database models: sessions and their resource subscriptions, the admin-managed tools, prompts, model
exposures and query tools, and the audit log of tool calls."""

from __future__ import annotations

import hashlib
import re
import secrets
from collections.abc import Callable, Container
from typing import Any

import jsonschema
from django.conf import settings
from django.contrib.auth.models import Group, Permission
from django.contrib.contenttypes.models import ContentType
from django.core.exceptions import ImproperlyConfigured, ValidationError
from django.db import models
from django.utils import timezone
from django.utils.translation import gettext_lazy as _

from .prompt_templates import PromptTemplateError, compile_prompt_template

# -- what the provider layer tells the models ----------------------------------------------------------------
# The providers (mcp_app.providers) build on these models, so the models cannot import them: what a row
# needs from that layer (validation of exposures and query tools, the names registered in code) is
# registered here by mcp_app.providers.hooks, which the app's ready() imports. Until it has been, the
# rows that depend on it refuse to answer (ImproperlyConfigured) rather than pass unchecked.

#: Validation ``clean()`` runs after the model's own, by model class: each hook takes the instance and
#: raises ValidationError (see :func:`run_clean_hooks`).
clean_hooks: dict[type[models.Model], list[Callable[[Any], None]]] = {}

#: The names registered in code, by kind (``"tools"``, ``"prompts"``): what the rows' ``orphaned``
#: compares their name with. Each entry returns the current names (registration goes on at start-up).
code_names: dict[str, Callable[[], Container[str]]] = {}


def run_clean_hooks(instance: models.Model) -> None:
    """Run the provider layer's validation of ``instance`` (:data:`clean_hooks`); ImproperlyConfigured when
    none is registered for its model, so that a row is never taken as valid unchecked."""
    hooks = clean_hooks.get(type(instance))
    if not hooks:
        raise ImproperlyConfigured(
            f"No validation is registered for {type(instance).__name__}: mcp_app.providers.hooks is not "
            "loaded (is mcp_app in INSTALLED_APPS, and the app registry ready?)."
        )
    for hook in hooks:
        hook(instance)


def _code_names(kind: str) -> Container[str]:
    names = code_names.get(kind)
    if names is None:
        raise ImproperlyConfigured(f"The {kind} registered in code are unknown: mcp_app.providers.hooks is not loaded.")
    return names()


class Session(models.Model):
    """One MCP session: created by ``initialize``, ended by DELETE, the admin, or the client going away.

    Any worker can serve a session's next message; the row is the source of truth and
    :mod:`mcp_app.sessions` caches it so the common message costs no query.
    """

    class Transport(models.TextChoices):
        STREAMABLE_HTTP = "streamable_http", _("Streamable HTTP")
        SSE = "sse", _("HTTP+SSE (legacy)")

    id = models.CharField(primary_key=True, max_length=64, editable=False)
    transport = models.CharField(max_length=20, choices=Transport.choices, default=Transport.STREAMABLE_HTTP)
    protocol_version = models.CharField(max_length=16)
    client_name = models.CharField(max_length=200, blank=True)
    client_version = models.CharField(max_length=100, blank=True)
    client_info = models.JSONField(default=dict, blank=True)
    client_capabilities = models.JSONField(default=dict, blank=True)
    log_level = models.CharField(max_length=16, blank=True, default="")
    # Channel-layer name of the stream that carries the session's answers (legacy HTTP+SSE transport).
    stream_channel = models.CharField(max_length=200, blank=True, default="", editable=False)
    # The worker process (Worker.id) holding the session's legacy stream: while its lease is alive answers can
    # reach the stream; once it lapses the session ends (mcp_app.workers). A plain id, not a foreign key: the
    # session must outlive the worker's row long enough to be found and ended, and writing it needs no lock.
    worker = models.CharField(max_length=32, blank=True, default="", editable=False)
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="mcp_sessions"
    )
    # Who opened it ("token:3", "user:7", "oauth:7:2", "anonymous"): only the same principal may use it.
    principal = models.CharField(max_length=100, blank=True, default="", db_index=True, editable=False)
    created = models.DateTimeField(default=timezone.now, db_index=True)
    last_seen = models.DateTimeField(default=timezone.now)
    ended = models.DateTimeField(null=True, blank=True, db_index=True)

    class Meta:
        ordering = ["-created"]
        verbose_name = _("MCP session")
        verbose_name_plural = _("MCP sessions")
        # What each worker's reaper asks every few seconds: the open sessions held by some worker.
        indexes = [models.Index(fields=["worker"], condition=models.Q(ended__isnull=True), name="mcp_app_session_open_worker")]

    def __str__(self) -> str:
        client = self.client_name or "unknown client"
        return f"{client} ({self.id[:8]}…)"

    @property
    def is_active(self) -> bool:
        return self.ended is None


class StreamEvent(models.Model):
    """One SSE event of a Streamable HTTP stream, kept so that a client whose connection dropped can resume
    (``GET`` with ``Last-Event-ID: <stream>:<seq>``) on any worker: see :mod:`mcp_app.transports.resume`.

    Bounded: ``STREAM_EVENT_MAX_PER_STREAM`` per stream and ``STREAM_EVENT_RETENTION_SECONDS`` of age.
    """

    session = models.ForeignKey(Session, on_delete=models.CASCADE, related_name="+")
    # "p…" for a POST's stream, "g…" for a GET stream; unique within the session.
    stream = models.CharField(max_length=32)
    seq = models.PositiveIntegerField()
    # None: no message (the priming event, or the end marker of a batch's stream).
    message = models.JSONField(null=True, blank=True)
    # The stream ends after this event (the request's answer was sent): a resumed stream closes here.
    final = models.BooleanField(default=False)
    created = models.DateTimeField(default=timezone.now, db_index=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["session", "stream", "seq"], name="mcp_app_stream_event_seq")]
        verbose_name = _("MCP stream event")
        verbose_name_plural = _("MCP stream events")

    def __str__(self) -> str:
        return f"{self.stream}:{self.seq}"


class Worker(models.Model):
    """A worker process's lease: every worker renews its row every ``WORKER_HEARTBEAT_INTERVAL`` seconds.

    A row whose ``expires`` has passed belongs to a worker that died (``kill -9``, a crash, a lost host) or
    cannot reach the database: the other workers end the legacy sessions whose streams it held and delete
    the row (:mod:`mcp_app.workers`). Times are the database's clock, so hosts' clocks need not agree.
    """

    id = models.CharField(primary_key=True, max_length=32, editable=False)
    host = models.CharField(max_length=255, editable=False)
    pid = models.PositiveIntegerField(editable=False)
    started = models.DateTimeField(default=timezone.now, editable=False)
    heartbeat = models.DateTimeField(default=timezone.now, editable=False)
    expires = models.DateTimeField(db_index=True, editable=False)

    class Meta:
        ordering = ["started"]
        verbose_name = _("MCP worker")
        verbose_name_plural = _("MCP workers")

    def __str__(self) -> str:
        return f"{self.host} pid {self.pid} ({self.id})"


class AccessRule(models.Model):
    """Who may see and use a tool or prompt: every listed permission, and one of the listed groups.

    Nothing listed means everyone the endpoint lets in.
    """

    required_permissions = models.ManyToManyField(
        Permission, blank=True, related_name="+", help_text=_("The caller needs every one of these permissions.")
    )
    allowed_groups = models.ManyToManyField(
        Group,
        blank=True,
        related_name="+",
        help_text=_("If any are chosen, the caller must belong to at least one of these groups."),
    )

    class Meta:
        abstract = True

    def allows(self, user: Any, permission_names: list[str], group_ids: list[int]) -> bool:
        """Whether ``user`` passes; the caller gives the rule's permissions and groups, prefetched."""
        if not permission_names and not group_ids:
            return True
        if user is None or not getattr(user, "is_authenticated", False) or not user.is_active:
            return False
        if user.is_superuser:
            return True
        if permission_names and not user.has_perms(permission_names):
            return False
        if group_ids and not user.groups.filter(id__in=group_ids).exists():
            return False
        return True


def validate_input_schema(value: Any) -> None:
    """An admin-edited input schema must stay a valid JSON Schema 2020-12 object schema."""
    if value in (None, ""):
        return
    if not isinstance(value, dict):
        raise ValidationError(_("The input schema must be a JSON object."))
    try:
        jsonschema.Draft202012Validator.check_schema(value)
    except jsonschema.SchemaError as exc:
        where = "/".join(str(p) for p in exc.absolute_path) or "the top level"
        raise ValidationError(
            _("Not a valid JSON Schema 2020-12 (at %(where)s): %(msg)s"), params={"where": where, "msg": exc.message}
        ) from None
    if value.get("type") != "object":
        raise ValidationError(_('A tool\'s input schema must have "type": "object".'))


class Tool(AccessRule):
    """A tool clients can see, whatever its source, as the site's admins configure it.

    Every tool has a row: tools registered in code (the handler stays in code), the data tools each model
    exposure generates, and the admin's query tools (:class:`QueryTool`). The provider creates the missing
    rows, idempotently, on migrate, at start-up and when the admin's tool list is shown; until a tool has a
    row it is served with its source's defaults. On every source, ``enabled`` and the access rule (permissions,
    groups) are honoured by tools/list and tools/call. A row whose tool is gone (no handler, exposure or query
    tool of that name any more) is *orphaned* and never listed to clients.
    """

    class Source(models.TextChoices):
        CODE = "code", _("code")
        DATA = "data", _("data tool")
        QUERY = "query", _("query tool")

    name = models.CharField(max_length=128, unique=True, editable=False)
    source = models.CharField(
        max_length=8,
        choices=Source.choices,
        default=Source.CODE,
        editable=False,
        db_index=True,
        help_text=_("Where the tool comes from: code, a model exposure's data tools, or a query tool."),
    )
    # The exposure (app_label.model_name) a data tool or query tool reads; blank for code tools.
    exposure = models.CharField(max_length=200, blank=True, default="", editable=False, db_index=True)
    enabled = models.BooleanField(default=True, help_text=_("Disabled tools are not listed and cannot be called."))
    title = models.CharField(max_length=200, blank=True, help_text=_("Blank: the title given in code."))
    description = models.TextField(blank=True, help_text=_("Blank: the description from code (its docstring)."))
    read_only_hint = models.BooleanField(null=True, blank=True, verbose_name=_("read-only hint"))
    destructive_hint = models.BooleanField(null=True, blank=True)
    idempotent_hint = models.BooleanField(null=True, blank=True)
    open_world_hint = models.BooleanField(null=True, blank=True, verbose_name=_("open-world hint"))
    input_schema = models.JSONField(
        null=True,
        blank=True,
        validators=[validate_input_schema],
        help_text=_("Blank: the schema derived from the handler's type hints. Must be valid JSON Schema 2020-12."),
    )
    created = models.DateTimeField(auto_now_add=True)
    updated = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["name"]
        verbose_name = _("MCP tool")
        verbose_name_plural = _("MCP tools")

    def __str__(self) -> str:
        return self.name

    def save(self, *args: Any, **kwargs: Any) -> None:
        super().save(*args, **kwargs)
        if self.source == self.Source.QUERY:
            # One switch, two rows: a query tool's own row holds its definition and ``enabled``; keep them equal
            # (update() sends no signal: this row's save already tells connected clients).
            QueryTool.objects.filter(name=self.name).exclude(enabled=self.enabled).update(enabled=self.enabled)

    @property
    def orphaned(self) -> bool:
        """A code tool whose handler is gone (whether a data or query tool is still served, the provider's
        catalog says: see the admin's tool list)."""
        return self.source == self.Source.CODE and self.name not in _code_names("tools")

    def clean(self) -> None:
        """The provider layer's checks of an edited input schema (its ``x-mcp-header`` annotations, which
        clients of MCP 2026-07-28 refuse when invalid), run through :data:`clean_hooks`."""
        super().clean()
        run_clean_hooks(self)

    def annotations(self) -> dict[str, bool]:
        """The hints set here (None fields leave the code's value)."""
        pairs = (
            ("readOnlyHint", self.read_only_hint),
            ("destructiveHint", self.destructive_hint),
            ("idempotentHint", self.idempotent_hint),
            ("openWorldHint", self.open_world_hint),
        )
        return {key: value for key, value in pairs if value is not None}


class Prompt(AccessRule):
    """A prompt: authored in the admin (arguments and message templates), or registered in code."""

    name = models.CharField(max_length=128, unique=True, help_text=_("Letters, digits, '_', '-' and '.'; what clients ask for."))
    enabled = models.BooleanField(default=True)
    title = models.CharField(max_length=200, blank=True)
    description = models.TextField(blank=True)
    from_code = models.BooleanField(
        default=False, editable=False, help_text=_("Registered in code: its messages come from code.")
    )
    created = models.DateTimeField(auto_now_add=True)
    updated = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["name"]
        verbose_name = _("MCP prompt")
        verbose_name_plural = _("MCP prompts")

    def __str__(self) -> str:
        return self.name

    def clean(self) -> None:
        if not re.fullmatch(r"[A-Za-z0-9_.\-]{1,128}", self.name or ""):
            raise ValidationError({"name": _("Use 1 to 128 letters, digits, '_', '-' or '.'.")})

    @property
    def orphaned(self) -> bool:
        return self.from_code and self.name not in _code_names("prompts")


class PromptArgument(models.Model):
    prompt = models.ForeignKey(Prompt, on_delete=models.CASCADE, related_name="arguments")
    name = models.CharField(max_length=100)
    description = models.CharField(max_length=500, blank=True)
    required = models.BooleanField(default=False)
    completions = models.TextField(blank=True, help_text=_("Values suggested by completion/complete, one per line."))
    position = models.PositiveIntegerField(default=0)

    class Meta:
        ordering = ["position", "id"]
        unique_together = [("prompt", "name")]

    def __str__(self) -> str:
        return self.name

    def completion_values(self) -> list[str]:
        return [line.strip() for line in self.completions.splitlines() if line.strip()]


class PromptMessage(models.Model):
    class Role(models.TextChoices):
        USER = "user", _("user")
        ASSISTANT = "assistant", _("assistant")

    prompt = models.ForeignKey(Prompt, on_delete=models.CASCADE, related_name="messages")
    role = models.CharField(max_length=10, choices=Role.choices, default=Role.USER)
    template = models.TextField(help_text=_("Django template syntax; the arguments are variables: {{ topic }}."))
    position = models.PositiveIntegerField(default=0)

    class Meta:
        ordering = ["position", "id"]

    def __str__(self) -> str:
        return f"{self.role}: {self.template[:40]}"

    def clean(self) -> None:
        # The engine prompts render with: a tag it lacks ({% debug %}, {% include %}, ...) is refused here.
        try:
            compile_prompt_template(self.template)
        except PromptTemplateError as exc:
            raise ValidationError({"template": str(exc)}) from None


class ToolCall(models.Model):
    """One tools/call, as it happened: the audit log (read-only in the admin).

    The row is written before the tool runs, as ``started``, and gets its outcome when the call ends; one
    still ``started`` is running, or its worker stopped before the outcome could be recorded.
    """

    class Outcome(models.TextChoices):
        STARTED = "started", _("started (no outcome yet: running, or its worker stopped)")
        OK = "ok", _("succeeded")
        TOOL_ERROR = "tool_error", _("tool error (isError)")
        REFUSED = "refused", _("refused (unknown, hidden or disabled)")
        FAILED = "failed", _("failed (protocol error)")
        # MCP 2026-07-28: the tool asked the client for input (InputRequiredResult); the retry is a new row.
        NEEDS_INPUT = "needs_input", _("needs input (the client answers and calls again)")

    # Neither ``created`` nor ``tool`` has an index of its own: each leads a composite index below, which
    # serves their lookups and ordering as well, and every index is one more write per call.
    created = models.DateTimeField(default=timezone.now)
    session = models.ForeignKey(Session, null=True, blank=True, on_delete=models.SET_NULL, related_name="tool_calls")
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="mcp_tool_calls"
    )
    tool = models.CharField(max_length=128)
    arguments = models.JSONField(default=dict, blank=True, help_text=_("Secret-looking keys are redacted."))
    outcome = models.CharField(max_length=12, choices=Outcome.choices, db_index=True)
    error_message = models.TextField(blank=True)
    duration_ms = models.FloatField(default=0)
    via = models.CharField(max_length=20, blank=True, help_text=_("Transport, or 'admin' for the try-it page."))

    class Meta:
        ordering = ["-created"]
        verbose_name = _("MCP tool call")
        verbose_name_plural = _("MCP tool calls")
        indexes = [
            # The dashboard's (mcp_app.dashboard): every column its window queries read, so that the counts by
            # outcome and transport, the bars and the percentiles read this index alone, never the wide rows
            # (arguments, error messages).
            models.Index(fields=["created", "outcome", "via", "duration_ms"], name="mcp_toolcall_window"),
            # Its per-tool table: rows come grouped by tool, so the database need not sort the window to group it.
            models.Index(fields=["tool", "created", "outcome", "duration_ms"], name="mcp_toolcall_tool_window"),
            # Its latency percentiles: the durations in order, so that the k-th of a window is read, not sorted.
            models.Index(fields=["duration_ms", "outcome", "created"], name="mcp_toolcall_duration"),
        ]

    def __str__(self) -> str:
        return f"{self.tool} at {self.created:%Y-%m-%d %H:%M:%S}"


class Subscription(models.Model):
    """A session's resources/subscribe: saves and deletes of the resource notify the session's streams."""

    session = models.ForeignKey(Session, on_delete=models.CASCADE, related_name="subscriptions")
    # Indexed: a saved object looks up its subscribers by URI.
    uri = models.CharField(max_length=1000, db_index=True)
    created = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["created"]
        unique_together = [("session", "uri")]
        verbose_name = _("resource subscription")
        verbose_name_plural = _("resource subscriptions")

    def __str__(self) -> str:
        return self.uri


class ModelExposure(models.Model):
    """A model exposed to MCP clients from the admin: resources, and data tools if enabled.

    The same options as :func:`mcp_app.providers.exposures.resource.expose` in code; a model exposed in code cannot also
    have a row. Exposures are created disabled, so that fields can be chosen before anything is shown.
    """

    class Source(models.TextChoices):
        ADMIN = "admin", _("admin")
        CODE = "code", _("code (expose())")

    content_type = models.OneToOneField(ContentType, on_delete=models.CASCADE, related_name="+", verbose_name=_("model"))
    # "code": the row stands for an exposure made in code (expose()), so that the admin lists it and can switch
    # it off; its other fields are unused (the code's options apply). Created by the provider's sync.
    source = models.CharField(max_length=8, choices=Source.choices, default=Source.ADMIN, editable=False, db_index=True)
    enabled = models.BooleanField(default=False, help_text=_("Nothing is exposed until this is on."))
    fields = models.JSONField(
        default=list,
        blank=True,
        verbose_name=_("allowed fields"),
        help_text=_("Only these fields are ever shown, filtered or ordered by."),
    )
    lookup_field = models.CharField(
        max_length=100, default="pk", help_text=_("The unique field in the resource URI: django://app/model/{lookup}.")
    )
    ordering = models.CharField(
        max_length=300, blank=True, help_text=_("Default order of data tools, comma separated: -published, title.")
    )
    base_filters = models.JSONField(
        default=dict,
        blank=True,
        help_text=_(
            'Rows outside these conditions are never shown, e.g. {"is_published": true}. Keys are field or '
            "field__lookup with exact, iexact, icontains, gt, gte, lt, lte, in or isnull."
        ),
    )
    title = models.CharField(max_length=200, blank=True)
    description = models.TextField(blank=True, help_text=_("What clients (and their models) are told about the data."))
    data_tools = models.BooleanField(default=True, help_text=_("Also offer list, search and get tools."))
    listed = models.BooleanField(
        default=True,
        verbose_name=_("listed in resources/list"),
        help_text=_(
            "Off: rows stay out of resources/list (useful for large tables); they are still read through the "
            "resource template and the data tools."
        ),
    )
    public = models.BooleanField(
        default=False,
        help_text=_("Anyone who can reach the MCP endpoint may read it. Off: the model's view permission is required."),
    )
    allow_sensitive_fields = models.BooleanField(
        default=False, help_text=_("Allow fields whose names look like credentials (password, token, secret...). Leave off.")
    )
    created = models.DateTimeField(auto_now_add=True)
    updated = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["content_type__app_label", "content_type__model"]
        verbose_name = _("model exposure")
        verbose_name_plural = _("model exposures")
        # Publishing is a decision of its own: the exposure permissions let a staff user choose fields,
        # not hand the data to every caller or show credential-like fields.
        permissions = [
            ("publish_modelexposure", _("Can make a model exposure public (readable without the model's view permission)")),
            ("allow_sensitive_modelexposure", _("Can allow credential-like fields on a model exposure")),
        ]

    def __str__(self) -> str:
        return f"{self.content_type.app_label}.{self.content_type.model}" if self.content_type_id else "(new exposure)"

    def save(self, *args: Any, **kwargs: Any) -> None:
        # An emptied JSON box arrives as None, which the NOT NULL columns refuse (IntegrityError): empty it is.
        self._fill_empty_json()
        super().save(*args, **kwargs)

    @property
    def key(self) -> str:
        return str(self)

    def _fill_empty_json(self) -> None:
        if self.fields is None:
            self.fields = []
        if self.base_filters is None:
            self.base_filters = {}

    def clean(self) -> None:
        """Validation: credential models and password fields are refused here (the admin form, and any code
        that calls ``full_clean()``); rows saved without it are refused again where exposures are served.
        The checks belong to the exposures (mcp_app.providers.exposures.validation), run through
        :data:`clean_hooks`. A code exposure's row holds only its switch: nothing to check."""
        self._fill_empty_json()
        if self.source == self.Source.CODE:
            return
        run_clean_hooks(self)


class QueryTool(models.Model):
    """A data tool defined in the admin on top of an exposure: what it does, the conditions it always
    applies, and the filters the caller may set. No code needed."""

    class Operation(models.TextChoices):
        LIST = "list", _("list matching rows")
        SEARCH = "search", _("search text fields, then list")
        COUNT = "count", _("count matching rows")

    name = models.CharField(
        max_length=64, unique=True, help_text=_("The tool's name: letters, digits, '_' and '-' (what clients call).")
    )
    exposure = models.CharField(max_length=200, help_text=_("The exposure it queries, as app_label.model_name."))
    operation = models.CharField(max_length=10, choices=Operation.choices, default=Operation.LIST)
    fixed_filters = models.JSONField(
        default=dict,
        blank=True,
        help_text=_('Conditions always applied, e.g. {"returned__isnull": true}; same keys as base filters.'),
    )
    caller_filters = models.JSONField(
        default=list,
        blank=True,
        help_text=_(
            'Filters the caller may set, from the exposure\'s allowed filters, e.g. ["title__icontains", "published__gte"].'
        ),
    )
    ordering = models.CharField(max_length=300, blank=True, help_text=_("Comma separated allowed fields, e.g. -published."))
    limit = models.PositiveIntegerField(default=20, help_text=_("Most rows returned (1 to 100)."))
    title = models.CharField(max_length=200, blank=True)
    description = models.TextField(blank=True)
    enabled = models.BooleanField(default=True)
    created = models.DateTimeField(auto_now_add=True)
    updated = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["name"]
        verbose_name = _("query tool")
        verbose_name_plural = _("query tools")

    def __str__(self) -> str:
        return self.name

    def save(self, *args: Any, **kwargs: Any) -> None:
        self._fill_empty_json()  # an emptied JSON box is None, which the NOT NULL columns refuse
        super().save(*args, **kwargs)
        # Its row in the tool list carries the same switch (see Tool.save); update() sends no signal, and this
        # row's own save tells connected clients.
        Tool.objects.filter(name=self.name, source=Tool.Source.QUERY).exclude(enabled=self.enabled).update(enabled=self.enabled)

    def delete(self, *args: Any, **kwargs: Any) -> Any:
        # Its row in the tool list goes with it (a queryset's delete() skips this: the provider's sync removes
        # the rows of query tools that are gone).
        Tool.objects.filter(name=self.name, source=Tool.Source.QUERY).delete()
        return super().delete(*args, **kwargs)

    def _fill_empty_json(self) -> None:
        if self.fixed_filters is None:
            self.fixed_filters = {}
        if self.caller_filters is None:
            self.caller_filters = []

    def clean(self) -> None:
        """The name, the exposure, the filters, the ordering and the limit, every problem at once; the checks
        belong to the exposures (mcp_app.providers.exposures.validation), run through :data:`clean_hooks`."""
        self._fill_empty_json()
        run_clean_hooks(self)


class Token(models.Model):
    """A bearer token for MCP clients: ``Authorization: Bearer mcp_…``.

    Only a SHA-256 hash is stored (tokens are 256 random bits, so a fast hash is enough); the token
    itself is shown once, when it is created. Revoking a token, or deactivating its user, ends the
    sessions opened with it and closes their streams.
    """

    #: Every token starts with this, so that it is recognisable in a leak scan and never mistaken for
    #: an OAuth access token.
    PREFIX = "mcp_"

    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="mcp_tokens")
    name = models.CharField(max_length=100, help_text=_("What it is for, e.g. 'Claude Desktop on my laptop'."))
    key_prefix = models.CharField(
        max_length=12, editable=False, db_index=True, help_text=_("The token's first characters, to recognise it.")
    )
    key_hash = models.CharField(max_length=64, unique=True, editable=False)
    scopes = models.CharField(
        max_length=200, default="mcp", blank=True, help_text=_("Space separated; 'mcp' is needed to use the MCP endpoints.")
    )
    created = models.DateTimeField(default=timezone.now, editable=False)
    expires = models.DateTimeField(null=True, blank=True, help_text=_("Blank: never expires."))
    last_used = models.DateTimeField(null=True, blank=True, editable=False)
    revoked = models.DateTimeField(null=True, blank=True, editable=False)

    class Meta:
        ordering = ["-created"]
        verbose_name = _("MCP token")
        verbose_name_plural = _("MCP tokens")

    def __str__(self) -> str:
        return f"{self.name} ({self.key_prefix}…)"

    @staticmethod
    def hash(key: str) -> str:
        return hashlib.sha256(key.encode()).hexdigest()

    @classmethod
    def create_for(
        cls,
        user: Any,
        *,
        name: str,
        scopes: str = "mcp",
        expires: Any = None,
        key: str | None = None,
    ) -> tuple[Token, str]:
        """Create a token; returns the row and the token itself (shown once, never stored)."""
        key = key or cls.PREFIX + secrets.token_urlsafe(32)
        token = cls.objects.create(
            user=user, name=name, scopes=scopes, expires=expires, key_prefix=key[:12], key_hash=cls.hash(key)
        )
        return token, key

    @property
    def principal(self) -> str:
        return f"token:{self.pk}"

    def is_usable(self) -> bool:
        now = timezone.now()
        return self.revoked is None and (self.expires is None or self.expires > now) and self.user.is_active

    def scope_set(self) -> frozenset[str]:
        return frozenset(self.scopes.split())
