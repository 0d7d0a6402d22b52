"""Database models: sessions, the admin-managed tools and prompts, and the audit log of tool calls."""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.contrib.auth.models import Group, Permission
from django.core.exceptions import ValidationError
from django.db import models
from django.utils import timezone
from django.utils.translation import gettext_lazy as _


class Session(models.Model):
    """One MCP session: created by ``initialize``, ended by DELETE, the admin, or the client going away.

    Any worker can serve a session's next message; the row is the source of truth and
    :mod:`mcp_app.sessions` caches it so the common message costs no query.
    """

    class Transport(models.TextChoices):
        STREAMABLE_HTTP = "streamable_http", _("Streamable HTTP")
        SSE = "sse", _("HTTP+SSE (legacy)")
        STDIO = "stdio", _("stdio")

    id = models.CharField(primary_key=True, max_length=64, editable=False)
    transport = models.CharField(max_length=20, choices=Transport.choices, default=Transport.STREAMABLE_HTTP)
    protocol_version = models.CharField(max_length=16)
    client_name = models.CharField(max_length=200, blank=True)
    client_version = models.CharField(max_length=100, blank=True)
    client_info = models.JSONField(default=dict, blank=True)
    client_capabilities = models.JSONField(default=dict, blank=True)
    log_level = models.CharField(max_length=16, blank=True, default="")
    subscriptions = models.JSONField(default=list, blank=True)
    # Channel-layer name of the stream that carries the session's answers (legacy HTTP+SSE transport).
    stream_channel = models.CharField(max_length=200, blank=True, default="", editable=False)
    user = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL,
                             related_name="mcp_sessions")
    created = models.DateTimeField(default=timezone.now, db_index=True)
    last_seen = models.DateTimeField(default=timezone.now)
    ended = models.DateTimeField(null=True, blank=True, db_index=True)

    class Meta:
        ordering = ["-created"]
        verbose_name = _("MCP session")
        verbose_name_plural = _("MCP sessions")

    def __str__(self) -> str:
        client = self.client_name or "unknown client"
        return f"{client} ({self.id[:8]}…)"

    @property
    def is_active(self) -> bool:
        return self.ended is None


class AccessRule(models.Model):
    """Who may see and use a tool or prompt: every listed permission, and one of the listed groups.

    Nothing listed means everyone the endpoint lets in.
    """

    required_permissions = models.ManyToManyField(
        Permission, blank=True, related_name="+",
        help_text=_("The caller needs every one of these permissions."))
    allowed_groups = models.ManyToManyField(
        Group, blank=True, related_name="+",
        help_text=_("If any are chosen, the caller must belong to at least one of these groups."))

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
    import jsonschema

    if value in (None, ""):
        return
    if not isinstance(value, dict):
        raise ValidationError(_("The input schema must be a JSON object."))
    try:
        jsonschema.Draft202012Validator.check_schema(value)
    except jsonschema.SchemaError as exc:
        where = "/".join(str(p) for p in exc.absolute_path) or "the top level"
        raise ValidationError(_("Not a valid JSON Schema 2020-12 (at %(where)s): %(msg)s"),
                              params={"where": where, "msg": exc.message}) from None
    if value.get("type") != "object":
        raise ValidationError(_('A tool\'s input schema must have "type": "object".'))


class Tool(AccessRule):
    """A code-registered tool as the site's admins configure it; the handler stays in code.

    Rows are created for every registered tool on migrate and at start-up; a row whose handler is
    gone is *orphaned* and never listed to clients.
    """

    name = models.CharField(max_length=128, unique=True, editable=False)
    enabled = models.BooleanField(default=True, help_text=_("Disabled tools are not listed and cannot be called."))
    title = models.CharField(max_length=200, blank=True, help_text=_("Blank: the title given in code."))
    description = models.TextField(blank=True, help_text=_("Blank: the description from code (its docstring)."))
    read_only_hint = models.BooleanField(null=True, blank=True, verbose_name=_("read-only hint"))
    destructive_hint = models.BooleanField(null=True, blank=True)
    idempotent_hint = models.BooleanField(null=True, blank=True)
    open_world_hint = models.BooleanField(null=True, blank=True, verbose_name=_("open-world hint"))
    input_schema = models.JSONField(
        null=True, blank=True, validators=[validate_input_schema],
        help_text=_("Blank: the schema derived from the handler's type hints. Must be valid JSON Schema 2020-12."))
    created = models.DateTimeField(auto_now_add=True)
    updated = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["name"]
        verbose_name = _("MCP tool")
        verbose_name_plural = _("MCP tools")

    def __str__(self) -> str:
        return self.name

    @property
    def orphaned(self) -> bool:
        from .registry import default_registry

        return self.name not in default_registry.tools

    def annotations(self) -> dict[str, bool]:
        """The hints set here (None fields leave the code's value)."""
        pairs = (("readOnlyHint", self.read_only_hint), ("destructiveHint", self.destructive_hint),
                 ("idempotentHint", self.idempotent_hint), ("openWorldHint", self.open_world_hint))
        return {key: value for key, value in pairs if value is not None}


class Prompt(AccessRule):
    """A prompt: authored in the admin (arguments and message templates), or registered in code."""

    name = models.CharField(max_length=128, unique=True,
                            help_text=_("Letters, digits, '_', '-' and '.'; what clients ask for."))
    enabled = models.BooleanField(default=True)
    title = models.CharField(max_length=200, blank=True)
    description = models.TextField(blank=True)
    from_code = models.BooleanField(default=False, editable=False,
                                    help_text=_("Registered in code: its messages come from code."))
    created = models.DateTimeField(auto_now_add=True)
    updated = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["name"]
        verbose_name = _("MCP prompt")
        verbose_name_plural = _("MCP prompts")

    def __str__(self) -> str:
        return self.name

    def clean(self) -> None:
        import re

        if not re.fullmatch(r"[A-Za-z0-9_.\-]{1,128}", self.name or ""):
            raise ValidationError({"name": _("Use 1 to 128 letters, digits, '_', '-' or '.'.")})

    @property
    def orphaned(self) -> bool:
        from .registry import default_registry

        return self.from_code and self.name not in default_registry.prompts


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
        from django.template import Engine, TemplateSyntaxError

        try:
            Engine(autoescape=False).from_string(self.template)
        except TemplateSyntaxError as exc:
            raise ValidationError({"template": str(exc)}) from None


class ToolCall(models.Model):
    """One tools/call, as it happened: the audit log (read-only in the admin)."""

    class Outcome(models.TextChoices):
        OK = "ok", _("succeeded")
        TOOL_ERROR = "tool_error", _("tool error (isError)")
        REFUSED = "refused", _("refused (unknown, hidden or disabled)")
        FAILED = "failed", _("failed (protocol error)")

    created = models.DateTimeField(default=timezone.now, db_index=True)
    session = models.ForeignKey(Session, null=True, blank=True, on_delete=models.SET_NULL, related_name="tool_calls")
    user = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL,
                             related_name="mcp_tool_calls")
    tool = models.CharField(max_length=128, db_index=True)
    arguments = models.JSONField(default=dict, blank=True, help_text=_("Secret-looking keys are redacted."))
    outcome = models.CharField(max_length=12, choices=Outcome.choices, db_index=True)
    error_message = models.TextField(blank=True)
    duration_ms = models.FloatField(default=0)
    via = models.CharField(max_length=20, blank=True, help_text=_("Transport, or 'admin' for the try-it page."))

    class Meta:
        ordering = ["-created"]
        verbose_name = _("MCP tool call")
        verbose_name_plural = _("MCP tool calls")

    def __str__(self) -> str:
        return f"{self.tool} at {self.created:%Y-%m-%d %H:%M:%S}"
