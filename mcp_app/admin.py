"""Admin screens: sessions, tools (with a try-it page), prompts, model exposures and query tools, and the
audit log of tool calls.

The tool, prompt and exposure lists show everything clients can see, whatever its source (code, the admin's
rows, the exposures' data tools, query tools): each with where it comes from, who may use it and a switch.
Items defined in code show the code's values and have no Delete; read-only pages have no Save."""

from __future__ import annotations

import json
import secrets
from typing import Any

from asgiref.sync import async_to_sync
from django import forms
from django.contrib import admin, messages
from django.contrib.admin.models import LogEntry
from django.contrib.auth import get_permission_codename
from django.contrib.contenttypes.models import ContentType
from django.core.exceptions import PermissionDenied
from django.forms.fields import InvalidJSONInput
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils import timezone
from django.utils.formats import localize
from django.utils.html import format_html, format_html_join
from django.utils.safestring import mark_safe
from django.utils.translation import gettext_lazy as _

from .conf import mcp_settings
from .connect import check_token_owner, connect_view, may_pick_any_user, user_picker, users_to_pick
from .dashboard import dashboard_view
from .models import (
    ModelExposure,
    Prompt,
    PromptArgument,
    PromptMessage,
    QueryTool,
    Session,
    Token,
    Tool,
    ToolCall,
    Worker,
)
from .permissions import AllowAny, DjangoModelViewPermission, IsAuthenticated, default_classes
from .protocol.context import MemorySession
from .protocol.errors import InvalidParams, McpError
from .providers.code import default_registry
from .providers.exposures.credentials import SENSITIVE_FIELD_RE, is_credential_model, is_password_field
from .providers.exposures.fields import convert_value
from .providers.exposures.resource import default_exposures, find_exposure
from .providers.exposures.serving import DataTool, generated_tools
from .providers.managed import ManagedProvider
from .runtime import end_sessions_now, get_server


def _pretty(value: Any) -> str:
    return format_html("<pre style='white-space: pre-wrap'>{}</pre>", json.dumps(value, indent=2, ensure_ascii=False))


class SafeModelMultipleChoiceField(forms.ModelMultipleChoiceField):
    """Django checks the chosen keys with ``pk__in``, and SQLite's driver answers a key past 64 bits with
    OverflowError (a 500). A key the column cannot hold is no valid choice: a form error, before any query."""

    def _check_values(self, value: Any) -> Any:
        model = self.queryset.model
        field = model._meta.pk if (self.to_field_name or "pk") == "pk" else model._meta.get_field(self.to_field_name)
        for key in value or ():
            try:
                convert_value(field, key, where="choice")
            except InvalidParams:
                raise forms.ValidationError(
                    self.error_messages["invalid_pk_value"], code="invalid_pk_value", params={"pk": key}
                ) from None
        return super()._check_values(value)


class SafeChoicesMixin:
    """Many-to-many choosers (permissions, groups) that refuse impossible keys with a form error."""

    def formfield_for_manytomany(self, db_field: Any, request: Any, **kwargs: Any) -> Any:
        kwargs.setdefault("form_class", SafeModelMultipleChoiceField)
        return super().formfield_for_manytomany(db_field, request, **kwargs)  # type: ignore[misc]


# -- what clients see, described for the admin --------------------------------------------------------------
def managed_provider() -> ManagedProvider | None:
    """The site's provider when it is the managed one (the rows below configure only that one)."""
    provider = mcp_settings.PROVIDER
    return provider if isinstance(provider, ManagedProvider) else None


def sync_rows() -> None:
    """Give everything clients can see its row (:meth:`ManagedProvider.sync`, code exposures included), so
    that a list shows it all."""
    provider = managed_provider()
    if provider is not None:
        provider.sync(exposures=True)


def served_data_tools() -> dict[str, DataTool]:
    """The data and query tools in force now, by name (the provider's catalog, as this worker holds it)."""
    provider = managed_provider()
    return dict(provider.catalog_sync().data_tools) if provider is not None else {}


def describe_classes(classes: list[type] | None, *, model: type | None = None) -> str:
    """Permission classes in words, for the "who may use it" columns."""
    words = []
    for cls in default_classes(classes):
        if cls is AllowAny:
            words.append(str(_("anyone")))
        elif cls is IsAuthenticated:
            words.append(str(_("signed-in users")))
        elif cls is DjangoModelViewPermission:
            label = str(_("view permission"))
            if model is not None:
                label += f" ({model._meta.app_label}.view_{model._meta.model_name})"
            words.append(label)
        else:
            words.append(cls.__name__)
    return " + ".join(words) or str(_("anyone"))


def describe_rule(row: Any) -> str:
    """A row's own access rule (permissions, groups) in words; empty when it has none. Uses the prefetched
    relations when the changelist prefetched them."""
    if row is None or row.pk is None:
        return ""
    perms = [f"{p.content_type.app_label}.{p.codename}" for p in row.required_permissions.all()]
    groups = [g.name for g in row.allowed_groups.all()]
    parts = []
    if perms:
        parts.append(str(_("needs %(perms)s")) % {"perms": ", ".join(perms)})
    if groups:
        parts.append(str(_("in group %(groups)s")) % {"groups": " or ".join(groups)})
    return "; ".join(parts)


def _badge(text: Any, color: str, *, title: Any = "") -> str:
    """White text on ``color``: what a list must not let pass unnoticed (public data, credential-like fields)."""
    return format_html(
        '<strong style="color: #fff; background: {}; padding: 1px 6px; border-radius: 3px" title="{}">{}</strong>',
        color,
        title,
        text,
    )


def _truncated(text: str, length: int = 48) -> str:
    """Long text cut for a changelist column (the full text in its tooltip), so the list fits 1366 px."""
    if len(text) <= length:
        return text
    return format_html('<span title="{}">{}…</span>', text, text[: length - 1])


def _name_cell(name: str, title: str) -> str:
    """A long identifier (a tool's snake_case name) for a changelist column: it may break anywhere rather than
    widen the list past the screen, and ``title`` is its tooltip."""
    return format_html('<span title="{}" style="overflow-wrap: anywhere">{}</span>', title, name)


def _when(moment: Any) -> str:
    """A date and time as the admin shows one, but as text that may wrap: the admin keeps date columns on one
    line (``nowrap``), and two or three of them side by side are more than a list can hold at 1366 px."""
    return localize(timezone.localtime(moment)) if moment else "—"


class SourceMixin:
    """Code items come back from code: they have no Delete (the change page's link, the bulk action), unless
    they are orphaned (their code is gone), when deleting the row is the clean-up."""

    def is_code_item(self, obj: Any) -> bool:
        raise NotImplementedError

    def has_delete_permission(self, request: Any, obj: Any = None) -> bool:
        if obj is not None and self.is_code_item(obj):
            return False
        return super().has_delete_permission(request, obj)  # type: ignore[misc]

    def get_deleted_objects(self, objs: Any, request: Any) -> Any:
        # The bulk action asks here: code items among the chosen rows refuse the whole deletion, saying why.
        deleted, counts, perms_needed, protected = super().get_deleted_objects(objs, request)  # type: ignore[misc]
        kept = [str(obj) for obj in objs if self.is_code_item(obj)]
        if kept:
            perms_needed = {*perms_needed, str(_("items defined in code (%(names)s)")) % {"names": ", ".join(kept)}}
        return deleted, counts, perms_needed, protected


class ReadOnlyPageMixin:
    """A page that only shows a row: no Save buttons (a POST is refused by has_change_permission)."""

    def change_view(self, request: Any, object_id: str, form_url: str = "", extra_context: dict[str, Any] | None = None) -> Any:
        extra_context = {
            **(extra_context or {}),
            "show_save": False,
            "show_save_and_continue": False,
            "show_save_and_add_another": False,
        }
        return super().change_view(request, object_id, form_url, extra_context)  # type: ignore[misc]


# -- sessions ------------------------------------------------------------------------------------------------
class ActiveFilter(admin.SimpleListFilter):
    title = _("state")
    parameter_name = "state"

    def lookups(self, request: Any, model_admin: Any) -> list[tuple[str, Any]]:
        return [("active", _("Active")), ("ended", _("Ended"))]

    def queryset(self, request: Any, queryset: Any) -> Any:
        if self.value() == "active":
            return queryset.filter(ended__isnull=True)
        if self.value() == "ended":
            return queryset.filter(ended__isnull=False)
        return queryset


@admin.register(Worker)
class WorkerAdmin(ReadOnlyPageMixin, admin.ModelAdmin):
    """The worker processes' leases (read-only: the workers keep them; a lapsed one ends its sessions)."""

    list_display = ("id", "host", "pid", "started", "heartbeat", "expires")
    readonly_fields = list_display

    def has_add_permission(self, request: Any) -> bool:
        return False

    def has_change_permission(self, request: Any, obj: Any = None) -> bool:
        return request.method != "POST" and super().has_change_permission(request, obj)

    def has_delete_permission(self, request: Any, obj: Any = None) -> bool:
        return False


@admin.register(Session)
class SessionAdmin(ReadOnlyPageMixin, admin.ModelAdmin):
    # Six columns, so the list fits 1366 px: the client with its version, the transport with its protocol.
    list_display = ("id_short", "client", "user", "transport_version", "last_seen", "is_active")
    list_filter = (ActiveFilter, "transport", "protocol_version", "client_name", ("user", admin.RelatedOnlyFieldListFilter))
    search_fields = ("id", "client_name", "user__username")
    date_hierarchy = "created"
    actions = ["end_sessions"]
    fields = (
        "id",
        "user",
        "transport",
        "protocol_version",
        "client_name",
        "client_version",
        "client_info_pretty",
        "capabilities_pretty",
        "subscriptions_pretty",
        "log_level",
        "worker",
        "created",
        "last_seen",
        "ended",
    )
    readonly_fields = fields

    def changelist_view(self, request: HttpRequest, extra_context: dict[str, Any] | None = None) -> HttpResponse:
        # Clients of protocol 2026-07-28 open no session: say where their calls are, rather than let an empty
        # list suggest that nobody is connected.
        audit = reverse("admin:mcp_app_toolcall_changelist") + "?session__isempty=1"
        self.message_user(
            request,
            format_html(
                _('Clients of MCP 2026-07-28 have no session: their calls are in the <a href="{}">audit log</a> (no session).'),
                audit,
            ),
            messages.INFO,
        )
        return super().changelist_view(request, extra_context)

    @admin.display(description=_("id"))
    def id_short(self, obj: Session) -> str:
        return f"{obj.id[:12]}…"

    @admin.display(description=_("client"), ordering="client_name")
    def client(self, obj: Session) -> str:
        return _truncated(f"{obj.client_name or '—'} {obj.client_version}".strip(), 32)

    @admin.display(description=_("transport (protocol)"), ordering="transport")
    def transport_version(self, obj: Session) -> str:
        return f"{obj.get_transport_display()} ({obj.protocol_version})"

    @admin.display(boolean=True, description=_("active"))
    def is_active(self, obj: Session) -> bool:
        return obj.is_active

    @admin.display(description=_("client info"))
    def client_info_pretty(self, obj: Session) -> str:
        return _pretty(obj.client_info)

    @admin.display(description=_("client capabilities"))
    def capabilities_pretty(self, obj: Session) -> str:
        return _pretty(obj.client_capabilities)

    @admin.display(description=_("resource subscriptions"))
    def subscriptions_pretty(self, obj: Session) -> str:
        return _pretty(list(obj.subscriptions.values_list("uri", flat=True)))

    def has_add_permission(self, request: Any) -> bool:
        return False

    def has_change_permission(self, request: Any, obj: Any = None) -> bool:
        return False if obj is not None and request.method == "POST" else super().has_change_permission(request, obj)

    @admin.action(description=_("End selected sessions (closes their streams)"), permissions=["delete"])
    def end_sessions(self, request: Any, queryset: Any) -> None:
        ids = list(queryset.filter(ended__isnull=True).values_list("id", flat=True))
        end_sessions_now(ids)
        self.message_user(request, _("Ended %(n)d session(s).") % {"n": len(ids)}, messages.SUCCESS)


# -- tools ---------------------------------------------------------------------------------------------------
class OrphanedFilter(admin.SimpleListFilter):
    title = _("served")
    parameter_name = "handler"

    def lookups(self, request: Any, model_admin: Any) -> list[tuple[str, Any]]:
        return [("present", _("Served")), ("orphaned", _("Gone, or its exposure is off"))]

    def queryset(self, request: Any, queryset: Any) -> Any:
        names = [*default_registry.tools, *served_data_tools()]
        if self.value() == "present":
            return queryset.filter(name__in=names)
        if self.value() == "orphaned":
            return queryset.exclude(name__in=names)
        return queryset


class TryItForm(forms.Form):
    arguments = forms.CharField(
        widget=forms.Textarea(attrs={"rows": 8, "cols": 80}), initial="{}", help_text=_("The tool's arguments as a JSON object.")
    )

    def clean_arguments(self) -> dict[str, Any]:
        try:
            value = json.loads(self.cleaned_data["arguments"])
        except json.JSONDecodeError as exc:
            raise forms.ValidationError(_("Not valid JSON: %(msg)s") % {"msg": exc.msg}) from None
        if not isinstance(value, dict):
            raise forms.ValidationError(_('The arguments must be a JSON object, like {"text": "hi"}.'))
        return value


class PrettyJSONField(forms.JSONField):
    """A JSON box that shows its value indented, as people read JSON."""

    def prepare_value(self, value: Any) -> Any:
        if isinstance(value, InvalidJSONInput):
            return value
        return json.dumps(value, ensure_ascii=False, indent=2, cls=self.encoder)


class HintSelect(forms.NullBooleanSelect):
    """An annotation hint: "Not set" rather than Django's "Unknown" (the hint is simply absent)."""

    def __init__(self, attrs: Any = None) -> None:
        super().__init__(attrs)
        self.choices = [("unknown", _("Not set")), ("true", _("Yes")), ("false", _("No"))]


#: The row's override fields and the keys of the code's definition they override.
_HINTS = {
    "read_only_hint": "readOnlyHint",
    "destructive_hint": "destructiveHint",
    "idempotent_hint": "idempotentHint",
    "open_world_hint": "openWorldHint",
}


class ToolForm(forms.ModelForm):
    """A tool's overrides, shown with the code's values as defaults.

    Blank fields of the row follow the code; the form fills them with the code's title, description, input
    schema and annotations so that the page shows what clients get. A value saved equal to the code's is
    stored blank (or None), so that the row keeps following the code when the code changes."""

    class Meta:
        model = Tool
        fields = (
            "enabled",
            "title",
            "description",
            "input_schema",
            *_HINTS,
            "required_permissions",
            "allowed_groups",
        )
        field_classes = {"input_schema": PrettyJSONField}
        help_texts = {
            "title": _("As the source sets it unless changed; saved as shown, it keeps following the source."),
            "description": _("As the source sets it unless changed; saved as shown, it keeps following the source."),
            "input_schema": _(
                "The schema derived from the handler's type hints unless changed (saved as shown, it keeps "
                "following the code). Must be valid JSON Schema 2020-12."
            ),
        }
        widgets = {
            "input_schema": forms.Textarea(attrs={"rows": 14, "cols": 90, "style": "font-family: monospace"}),
            **{name: HintSelect for name in _HINTS},
        }

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.code = self._code_definition()
        if not self.code:
            return
        annotations = self.code.get("annotations") or {}
        defaults = {
            "title": self.code.get("title", ""),
            "description": self.code.get("description", ""),
            "input_schema": self.code.get("inputSchema"),
            **{name: annotations.get(key) for name, key in _HINTS.items()},
        }
        for name, value in defaults.items():
            if name in self.fields and self.instance.pk is not None and getattr(self.instance, name) in (None, ""):
                self.initial[name] = value

    def _code_definition(self) -> dict[str, Any]:
        """What the tool's source defines (empty for an orphaned row)."""
        row = self.instance
        if row.source == Tool.Source.CODE:
            spec = default_registry.tools.get(row.name)
            return spec.definition() if spec is not None else {}
        tool = served_data_tools().get(row.name)
        return tool.definition() if tool is not None else {}

    def clean(self) -> dict[str, Any]:
        cleaned = super().clean()
        if not self.code:
            return cleaned
        annotations = self.code.get("annotations") or {}
        code_values = {
            "title": self.code.get("title", ""),
            "description": self.code.get("description", ""),
            "input_schema": self.code.get("inputSchema"),
            **{name: annotations.get(key) for name, key in _HINTS.items()},
        }
        for name, value in code_values.items():
            if name in cleaned and cleaned[name] == value and value not in (None, ""):
                cleaned[name] = None if name == "input_schema" or name in _HINTS else ""
        return cleaned


@admin.register(Tool)
class ToolAdmin(SourceMixin, SafeChoicesMixin, admin.ModelAdmin):
    """Every tool clients can see: code tools, each exposure's data tools and the query tools, each with its
    source, who may use it and its switch (``enabled``, also editable in the list and as bulk actions)."""

    form = ToolForm
    # Four columns (the title is the name's tooltip), so the list fits 1366 px beside the admin's side bars.
    list_display = ("name_with_title", "where_from", "enabled", "who")
    list_display_links = ("name_with_title",)
    list_editable = ("enabled",)
    list_filter = ("enabled", "source", OrphanedFilter)
    search_fields = ("name", "title", "description", "source", "exposure")
    actions = ["enable", "disable"]
    filter_horizontal = ("required_permissions", "allowed_groups")
    readonly_fields = ("name", "where_from", "code_definition", "try_link", "who")

    def is_code_item(self, obj: Tool) -> bool:
        # A row whose source still defines the tool (its code, its exposure, its query tool) would come back.
        return not self.orphaned(obj)

    @staticmethod
    def orphaned(obj: Tool) -> bool:
        if obj.source == Tool.Source.CODE:
            return obj.orphaned
        return obj.name not in served_data_tools() and not (
            obj.source == Tool.Source.QUERY and QueryTool.objects.filter(name=obj.name).exists()
        )

    def has_add_permission(self, request: Any) -> bool:
        return False  # rows come from the tools' sources (code, exposures, query tools)

    def get_actions(self, request: Any) -> Any:
        actions = super().get_actions(request)
        actions.pop("delete_selected", None)  # code and data tools come back from their source
        return actions

    def get_queryset(self, request: Any) -> Any:
        return super().get_queryset(request).prefetch_related("required_permissions__content_type", "allowed_groups")

    def changelist_view(self, request: HttpRequest, extra_context: dict[str, Any] | None = None) -> HttpResponse:
        sync_rows()  # a tool added in code or by an exposure since is listed at once
        return super().changelist_view(request, extra_context)

    def get_fieldsets(self, request: Any, obj: Any = None) -> Any:
        rule = (_("Who may use it"), {"fields": ("who", "required_permissions", "allowed_groups")})
        if obj is not None and obj.source != Tool.Source.CODE:
            what = ("title", "description", "code_definition") if obj.source == Tool.Source.DATA else ("code_definition",)
            return (
                (None, {"fields": ("name", "where_from", "enabled", "try_link")}),
                (_("What clients see"), {"fields": what}),
                rule,
            )
        return (
            (None, {"fields": ("name", "where_from", "enabled", "try_link")}),
            (_("What clients see (blank or as shown: the code's values)"), {"fields": ("title", "description", "input_schema")}),
            (_("Annotations (as the code sets them unless changed)"), {"fields": tuple(_HINTS)}),
            (_("Definition in code"), {"fields": ("code_definition",), "classes": ("collapse",)}),
            rule,
        )

    @admin.display(description=_("where it comes from"), ordering="source")
    def where_from(self, obj: Tool) -> str:
        if obj.source == Tool.Source.DATA:
            text = str(_("data tool of %(exposure)s")) % {"exposure": obj.exposure}
        elif obj.source == Tool.Source.QUERY:
            query = QueryTool.objects.filter(name=obj.name).first()
            text = str(_("query tool on %(exposure)s")) % {"exposure": obj.exposure}
            if query is not None:
                return format_html('<a href="{}">{}</a>', reverse("admin:mcp_app_querytool_change", args=[query.pk]), text)
        else:
            text = str(_("code"))
        if obj.source == Tool.Source.CODE and obj.orphaned:
            text += " " + str(_("(gone: never listed)"))
        elif self.orphaned(obj):
            text += " " + str(_("(not served: its exposure is off or gone)"))
        return text

    @admin.display(description=_("who may use it"))
    def who(self, obj: Tool) -> str:
        if obj.source == Tool.Source.CODE:
            spec = default_registry.tools.get(obj.name)
            base = describe_classes(spec.permission_classes if spec is not None else None)
        else:
            tool = served_data_tools().get(obj.name)
            exposure = tool.exposure if tool is not None else find_exposure(obj.exposure)
            base = (
                describe_classes(exposure.permission_classes, model=exposure.model)
                if exposure is not None
                else str(_("nobody (its exposure is off)"))
            )
        rule = describe_rule(obj)
        return f"{base}; {rule}" if rule else base

    @admin.display(description=_("name"), ordering="name")
    def name_with_title(self, obj: Tool) -> str:
        return _name_cell(obj.name, self.display_title(obj))

    @staticmethod
    def display_title(obj: Tool) -> str:
        """The title clients get: the row's, else its source's."""
        if obj.title:
            return obj.title
        if obj.source == Tool.Source.CODE:
            spec = default_registry.tools.get(obj.name)
            return spec.title or "" if spec is not None else ""
        tool = served_data_tools().get(obj.name)
        return tool.title if tool is not None else ""

    @admin.display(description=_("definition clients get from its source"))
    def code_definition(self, obj: Tool) -> str:
        if obj.source == Tool.Source.CODE:
            spec = default_registry.tools.get(obj.name)
            if spec is None:
                return _("Orphaned: no handler is registered under this name, so clients never see it.")
            return _pretty(spec.definition())
        tool = served_data_tools().get(obj.name)
        if tool is None:
            return _("Not served: its exposure or query tool is off or gone, so clients never see it.")
        return _pretty(tool.definition())

    @admin.display(description=_("try it"))
    def try_link(self, obj: Tool) -> str:
        if obj.pk is None or self.orphaned(obj):
            return "—"
        return format_html(
            '<a href="{}">{}</a>', reverse("admin:mcp_app_tool_try", args=[obj.pk]), _("Run this tool as yourself")
        )

    @admin.action(description=_("Enable selected tools"))
    def enable(self, request: Any, queryset: Any) -> None:
        for tool in queryset:  # save() per row: its signal tells connected clients
            tool.enabled = True
            tool.save(update_fields=["enabled", "updated"])
        self.message_user(request, _("Enabled %(n)d tool(s).") % {"n": queryset.count()}, messages.SUCCESS)

    @admin.action(description=_("Disable selected tools"))
    def disable(self, request: Any, queryset: Any) -> None:
        for tool in queryset:
            tool.enabled = False
            tool.save(update_fields=["enabled", "updated"])
        self.message_user(request, _("Disabled %(n)d tool(s).") % {"n": queryset.count()}, messages.SUCCESS)

    def get_urls(self) -> list[Any]:
        return [path("<int:pk>/try/", self.admin_site.admin_view(self.try_view), name="mcp_app_tool_try"), *super().get_urls()]

    def try_view(self, request: HttpRequest, pk: int) -> HttpResponse:
        """Run the tool with JSON arguments as the current staff user; the call is audited like any."""
        tool = get_object_or_404(Tool, pk=pk)
        if not self.has_view_permission(request, tool):
            raise PermissionDenied
        result = None
        form = TryItForm(request.POST or None)
        if request.method == "POST" and form.is_valid():
            result = run_tool_as(request.user, tool.name, form.cleaned_data["arguments"])
        context = {
            **self.admin_site.each_context(request),
            "opts": self.model._meta,
            "tool": tool,
            "form": form,
            "result": json.dumps(result, indent=2, ensure_ascii=False) if result is not None else None,
            "title": _("Try %(name)s") % {"name": tool.name},
        }
        return TemplateResponse(request, "admin/mcp_app/tool/try.html", context)


def run_tool_as(user: Any, name: str, arguments: dict[str, Any]) -> dict[str, Any]:
    """Call a tool through the site's provider as ``user``; protocol errors come back as an error object.

    The request's context is the dispatcher's, as for a client's call (a data tool's ``nextCursor`` is
    signed as the site signs them), on a session of its own that lives for this call only.
    """

    async def send(message: dict[str, Any]) -> None:  # the admin page shows only the result
        return None

    async def call() -> dict[str, Any]:
        dispatcher = get_server().dispatcher
        ctx = dispatcher.context(MemorySession(), "admin", send=send, extra={"user": user, "via": "admin"})
        try:
            return await dispatcher.provider.call_tool(name, arguments, ctx)
        except McpError as exc:
            return {"error": exc.to_error()}

    return async_to_sync(call)()


# -- prompts -------------------------------------------------------------------------------------------------
class PromptArgumentInline(admin.TabularInline):
    model = PromptArgument
    extra = 0
    fields = ("position", "name", "description", "required", "completions")


class PromptMessageInline(admin.StackedInline):
    model = PromptMessage
    extra = 0
    fields = ("position", "role", "template")

    def get_extra(self, request: Any, obj: Any = None, **kwargs: Any) -> int:
        return 1 if obj is None else 0  # a new prompt starts with a message to write


class PromptForm(forms.ModelForm):
    """A code prompt's title and description shown with the code's values as defaults (a value saved equal to
    the code's is stored blank, so the row keeps following the code)."""

    class Meta:
        model = Prompt
        fields = ("name", "enabled", "title", "description", "required_permissions", "allowed_groups")

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        spec = default_registry.prompts.get(self.instance.name) if self.instance.from_code else None
        self.code = spec.definition() if spec is not None else {}
        for name in ("title", "description"):
            if self.code.get(name) and name in self.fields and not getattr(self.instance, name):
                self.initial[name] = self.code[name]

    def clean(self) -> dict[str, Any]:
        cleaned = super().clean()
        for name in ("title", "description"):
            if self.code.get(name) and cleaned.get(name) == self.code[name]:
                cleaned[name] = ""
        return cleaned


@admin.register(Prompt)
class PromptAdmin(SourceMixin, SafeChoicesMixin, admin.ModelAdmin):
    """Every prompt clients can see: written here (arguments and message templates) or registered in code."""

    form = PromptForm
    list_display = ("name", "where_from", "enabled", "who", "display_title")
    list_editable = ("enabled",)
    list_filter = ("enabled", "from_code")
    search_fields = ("name", "title", "description")
    actions = ["enable", "disable"]
    filter_horizontal = ("required_permissions", "allowed_groups")
    inlines = [PromptArgumentInline, PromptMessageInline]
    # The arguments and messages come right after the name and description; who may use it last, folded
    # (admin/mcp_app/prompt/change_form.html puts the fieldsets marked "mcp-after-inlines" after the inlines).
    fieldsets = (
        (None, {"fields": ("name", "where_from", "enabled")}),
        (_("What clients see"), {"fields": ("title", "description")}),
        (
            _("Who may use it"),
            {"fields": ("who", "required_permissions", "allowed_groups"), "classes": ("collapse", "mcp-after-inlines")},
        ),
    )

    def is_code_item(self, obj: Prompt) -> bool:
        return obj.from_code and not obj.orphaned

    def get_queryset(self, request: Any) -> Any:
        return super().get_queryset(request).prefetch_related("required_permissions__content_type", "allowed_groups")

    def get_search_results(self, request: Any, queryset: Any, search_term: str) -> tuple[Any, bool]:
        # "code" or "admin" finds the prompts of that source too (the source is a flag, not text).
        results, duplicates = super().get_search_results(request, queryset, search_term)
        words = {word.lower() for word in search_term.split()}
        if "code" in words:
            results |= queryset.filter(from_code=True)
        if "admin" in words:
            results |= queryset.filter(from_code=False)
        return results, duplicates

    def changelist_view(self, request: HttpRequest, extra_context: dict[str, Any] | None = None) -> HttpResponse:
        sync_rows()
        return super().changelist_view(request, extra_context)

    def get_fieldsets(self, request: Any, obj: Any = None) -> Any:
        if obj is not None and obj.from_code:
            return (
                (None, {"fields": ("name", "where_from", "enabled")}),
                (_("What clients see (as shown: the code's values)"), {"fields": ("title", "description", "code_definition")}),
                self.fieldsets[-1],
            )
        return self.fieldsets

    def get_readonly_fields(self, request: Any, obj: Any = None) -> tuple[str, ...]:
        shown = ("where_from", "who", "code_definition")
        return ("name", *shown) if obj is not None and obj.from_code else shown

    def get_inlines(self, request: Any, obj: Any) -> list[Any]:
        # A code prompt's arguments and messages come from its function.
        return [] if obj is not None and obj.from_code else self.inlines

    @admin.display(description=_("where it comes from"), ordering="from_code")
    def where_from(self, obj: Prompt) -> str:
        if not obj.from_code:
            return str(_("admin"))
        return str(_("code")) + (" " + str(_("(gone: never listed)")) if obj.orphaned else "")

    @admin.display(description=_("who may use it"))
    def who(self, obj: Prompt) -> str:
        spec = default_registry.prompts.get(obj.name) if obj.from_code else None
        base = describe_classes(spec.permission_classes if spec is not None else None)
        rule = describe_rule(obj)
        return f"{base}; {rule}" if rule else base

    @admin.display(description=_("title"))
    def display_title(self, obj: Prompt) -> str:
        spec = default_registry.prompts.get(obj.name) if obj.from_code else None
        return _truncated(obj.title or (spec.title if spec is not None and spec.title else ""))

    @admin.display(description=_("definition in code"))
    def code_definition(self, obj: Prompt) -> str:
        spec = default_registry.prompts.get(obj.name)
        if spec is None:
            return _("Orphaned: no prompt is registered under this name, so clients never see it.")
        return _pretty(spec.definition())

    @admin.action(description=_("Enable selected prompts"))
    def enable(self, request: Any, queryset: Any) -> None:
        for prompt in queryset:  # save() per row: its signal tells connected clients
            prompt.enabled = True
            prompt.save(update_fields=["enabled", "updated"])
        self.message_user(request, _("Enabled %(n)d prompt(s).") % {"n": queryset.count()}, messages.SUCCESS)

    @admin.action(description=_("Disable selected prompts"))
    def disable(self, request: Any, queryset: Any) -> None:
        for prompt in queryset:
            prompt.enabled = False
            prompt.save(update_fields=["enabled", "updated"])
        self.message_user(request, _("Disabled %(n)d prompt(s).") % {"n": queryset.count()}, messages.SUCCESS)


# -- model exposures ------------------------------------------------------------------------------------------
#: Never offered in the chooser: bookkeeping of Django's own (the admin log, content types). Models that hold
#: credentials are refused by :func:`mcp_app.providers.exposures.credentials.credential_problem` wherever a row is validated.
_NEVER_OFFERED_APPS = ("admin", "contenttypes")
PUBLISH_PERMISSION = "mcp_app.publish_modelexposure"
SENSITIVE_PERMISSION = "mcp_app.allow_sensitive_modelexposure"


def may_view_model(user: Any, model: type) -> bool:
    """Whether ``user`` may view ``model``'s rows in the admin (view or change permission, as Django's admin
    decides): a staff user can only expose what they could read themselves."""
    opts = model._meta
    return any(user.has_perm(f"{opts.app_label}.{get_permission_codename(action, opts)}") for action in ("view", "change"))


def exposable_models(user: Any) -> Any:
    """The content types ``user`` may choose for an exposure: models they may view that hold no credentials."""
    ids = []
    for content_type in ContentType.objects.exclude(app_label__in=_NEVER_OFFERED_APPS):
        model = content_type.model_class()
        if model is not None and not is_credential_model(model) and may_view_model(user, model):
            ids.append(content_type.pk)
    return ContentType.objects.filter(pk__in=ids)


class FormErrorsMixin:
    """Model validation may name a field the form does not show (read-only, or not on the add page); Django
    would raise ValueError (a 500) for it. Such errors become errors of the whole form, so the page says why."""

    def add_error(self, field: str | None, error: Any) -> None:
        if field is None and hasattr(error, "error_dict"):
            shown = {name: messages for name, messages in error.error_dict.items() if name in self.fields}  # type: ignore[attr-defined]
            hidden = [
                m for name, messages in error.error_dict.items() if name not in shown and name != "__all__" for m in messages
            ]
            hidden += error.error_dict.get("__all__", [])
            if shown:
                super().add_error(None, forms.ValidationError(shown))  # type: ignore[misc]
            if hidden:
                super().add_error(None, forms.ValidationError(hidden))  # type: ignore[misc]
            return
        super().add_error(field, error)  # type: ignore[misc]


class ModelExposureForm(FormErrorsMixin, forms.ModelForm):
    """Fields are chosen from the model's own fields once the model is known (the row has been saved).

    ``user`` is set by :meth:`ModelExposureAdmin.get_form`: the model must be one they may view, on add and
    on every change (a POST naming another model is a form error, never saved)."""

    user: Any = None

    fields = forms.MultipleChoiceField(
        required=False,
        widget=forms.CheckboxSelectMultiple,
        label=_("allowed fields"),
        help_text=_("Only these fields are ever shown, filtered or ordered by."),
    )
    lookup_field = forms.ChoiceField(initial="pk", help_text=_("The unique field in the resource URI."))

    class Meta:
        model = ModelExposure
        fields = (
            "content_type",
            "enabled",
            "title",
            "description",
            "fields",
            "allow_sensitive_fields",
            "lookup_field",
            "ordering",
            "base_filters",
            "data_tools",
            "listed",
            "public",
        )

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        if "content_type" in self.fields and self.user is not None:
            self.fields["content_type"].queryset = exposable_models(self.user)
        model = self.instance.content_type.model_class() if self.instance.content_type_id else None
        if model is None:  # adding: the model is chosen first, its fields on the next page
            self.fields.pop("fields", None)
            self.fields.pop("lookup_field", None)
            return
        choices, lookups = [], [("pk", _("pk (primary key)"))]
        for field in model._meta.get_fields():
            if not field.concrete or (field.auto_created and not field.primary_key):
                continue  # reverse relations cannot be exposed
            if is_password_field(model, field.name):
                continue  # password hashes are never served: not even offered
            label = f"{field.name} ({field.get_internal_type()})"
            if SENSITIVE_FIELD_RE.search(field.name):
                label += " — " + str(_("looks like a credential"))
            choices.append((field.name, label))
            if field.unique and not field.primary_key:
                lookups.append((field.name, field.name))
        self.fields["fields"].choices = choices
        self.fields["lookup_field"].choices = lookups

    def clean(self) -> dict[str, Any]:
        cleaned = super().clean()
        content_type = cleaned.get("content_type") or (self.instance.content_type if self.instance.content_type_id else None)
        model = content_type.model_class() if content_type is not None else None
        if self.user is not None and model is not None and not may_view_model(self.user, model):
            # The change page shows the model read-only: re-checked here, as the user's permissions may have changed.
            raise forms.ValidationError(_("You may not view %(model)s, so you cannot expose it.") % {"model": model._meta.label})
        return cleaned


class CodeExposureForm(forms.ModelForm):
    """A code exposure's row: only its switch can change (its options are the code's)."""

    class Meta:
        model = ModelExposure
        fields = ("enabled",)


@admin.register(ModelExposure)
class ModelExposureAdmin(SourceMixin, admin.ModelAdmin):
    """Every model exposure clients can see: made in code with expose() (listed read-only, with a switch) or
    defined here."""

    form = ModelExposureForm
    list_display = ("__str__", "where_from", "enabled", "audience", "offers_data_tools", "field_list")
    list_filter = ("enabled", "source", "public", "allow_sensitive_fields", "data_tools")
    search_fields = ("content_type__app_label", "content_type__model", "title", "description", "source")
    actions = ["enable", "disable"]

    def is_code_item(self, obj: ModelExposure) -> bool:
        return obj.source == ModelExposure.Source.CODE and obj.key in default_exposures.exposures

    def changelist_view(self, request: HttpRequest, extra_context: dict[str, Any] | None = None) -> HttpResponse:
        sync_rows()  # exposures made in code are listed too
        return super().changelist_view(request, extra_context)

    def get_form(self, request: Any, obj: Any = None, change: bool = False, **kwargs: Any) -> Any:
        if obj is not None and obj.source == ModelExposure.Source.CODE:
            kwargs["form"] = CodeExposureForm
            return super().get_form(request, obj, change=change, **kwargs)
        form = super().get_form(request, obj, change=change, **kwargs)
        return type(form.__name__, (form,), {"user": request.user})

    def get_fieldsets(self, request: Any, obj: Any = None) -> Any:
        if obj is not None and obj.source == ModelExposure.Source.CODE:
            return (
                (None, {"fields": ("content_type", "where_from", "enabled")}),
                (_("As the code exposes it (change it in code)"), {"fields": ("code_summary",)}),
            )
        if obj is None:  # first the model; its fields can be chosen once it is saved
            return (
                (
                    None,
                    {
                        "fields": ("content_type", "title", "description"),
                        "description": _("Choose the model and save: its fields are offered next. New exposures start disabled."),
                    },
                ),
            )
        return (
            (None, {"fields": ("content_type", "enabled", "title", "description")}),
            (
                _("What is shown"),
                {
                    "fields": (
                        "fields",
                        "allow_sensitive_fields",
                        "lookup_field",
                        "ordering",
                        "base_filters",
                        ("data_tools", "listed"),
                    )
                },
            ),
            (
                _("Who may read it"),
                {
                    "fields": ("public",),
                    "description": _(
                        "Not public: the model's view permission is required. Making an "
                        "exposure public, or allowing credential-like fields, needs a "
                        "permission of its own and is recorded in the admin log."
                    ),
                },
            ),
        )

    def get_readonly_fields(self, request: Any, obj: Any = None) -> tuple[str, ...]:
        if obj is None:
            return ()
        if obj.source == ModelExposure.Source.CODE:
            return ("content_type", "where_from", "code_summary")
        readonly = ["content_type"]
        # Without the dedicated permissions the flags are shown, never editable (a forged POST is ignored).
        if not request.user.has_perm(PUBLISH_PERMISSION):
            readonly.append("public")
        if not request.user.has_perm(SENSITIVE_PERMISSION):
            readonly.append("allow_sensitive_fields")
        return tuple(readonly)

    @staticmethod
    def code_exposure(obj: ModelExposure) -> Any:
        return default_exposures.exposures.get(obj.key) if obj.source == ModelExposure.Source.CODE else None

    @admin.display(description=_("where it comes from"), ordering="source")
    def where_from(self, obj: ModelExposure) -> str:
        if obj.source != ModelExposure.Source.CODE:
            return str(_("admin"))
        return str(_("code (expose())")) + ("" if self.code_exposure(obj) else " " + str(_("(gone: never served)")))

    @admin.display(description=_("who may read it"), ordering="public")
    def audience(self, obj: ModelExposure) -> str:
        exposure = self.code_exposure(obj)
        if exposure is not None:
            public = AllowAny in exposure.permission_classes
            label = describe_classes(exposure.permission_classes, model=exposure.model)
            sensitive = exposure.allow_sensitive_fields
        else:
            public, label, sensitive = obj.public, str(_("view permission")), obj.allow_sensitive_fields
        if public:
            label = _badge(_("PUBLIC: every caller"), "#ba2121")
        if sensitive:
            label = format_html("{} {}", label, _badge(_("ALLOWED"), "#c77700", title=_("credential-like fields allowed")))
        return label

    @admin.display(description=_("data tools"), boolean=True)
    def offers_data_tools(self, obj: ModelExposure) -> bool:
        exposure = self.code_exposure(obj)
        return exposure.data_tools if exposure is not None else obj.data_tools

    @admin.display(description=_("fields"))
    def field_list(self, obj: ModelExposure) -> str:
        exposure = self.code_exposure(obj)
        fields = exposure.fields if exposure is not None else obj.fields or []
        return _truncated(", ".join(fields) or "—")

    @admin.display(description=_("options in code"))
    def code_summary(self, obj: ModelExposure) -> str:
        exposure = self.code_exposure(obj)
        if exposure is None:
            return _("Gone from code: nothing is served for this row (delete it).")
        tools = [tool.name for tool in generated_tools(exposure)]
        return _pretty(
            {
                "resource template": exposure.uri_template,
                "fields": exposure.fields,
                "lookup field": exposure.lookup_field,
                "ordering": exposure.ordering,
                "base filters": exposure.filters,
                "search fields": exposure.search_fields,
                "who may read it": describe_classes(exposure.permission_classes, model=exposure.model),
                "resource class": f"{type(exposure).__module__}.{type(exposure).__qualname__}",
                "data tools": tools,
                "listed in resources/list": getattr(exposure, "listed", True),
                "title": exposure.title,
                "description": exposure.description,
            }
        )

    def construct_change_message(self, request: Any, form: Any, formsets: Any, add: bool = False) -> Any:
        """Django's message, plus a sentence naming the exposure when it was made public or allowed
        credential-like fields (or stopped), so the admin log shows who published what."""
        message = super().construct_change_message(request, form, formsets, add)
        notes = publication_notes(form.instance, form.changed_data, form.cleaned_data)
        if not notes:
            return message
        # A plain-text message (not the JSON list) is shown as written on the object's history page.
        standard = LogEntry(change_message=json.dumps(message)).get_change_message() if message else ""
        return " ".join(part for part in (standard, *notes) if part)

    @admin.action(description=_("Enable selected exposures"))
    def enable(self, request: Any, queryset: Any) -> None:
        enabled = 0
        for row in queryset:
            try:
                row.full_clean()
            except Exception as exc:  # noqa: BLE001 - reported to the admin, row left as it is
                self.message_user(request, f"{row}: {exc}", messages.ERROR)
                continue
            row.enabled = True
            row.save(update_fields=["enabled", "updated"])  # its signal tells connected clients
            enabled += 1
        self.message_user(request, _("Enabled %(n)d exposure(s).") % {"n": enabled}, messages.SUCCESS)

    @admin.action(description=_("Disable selected exposures"))
    def disable(self, request: Any, queryset: Any) -> None:
        for row in queryset:
            row.enabled = False
            row.save(update_fields=["enabled", "updated"])
        self.message_user(request, _("Disabled %(n)d exposure(s).") % {"n": queryset.count()}, messages.SUCCESS)


def publication_notes(row: ModelExposure, changed: list[str], cleaned: dict[str, Any]) -> list[str]:
    """Sentences for the admin log about what a change did to who may read ``row`` and what it shows."""
    notes = []
    if "public" in changed:
        notes.append(
            f"Made {row.key} public: every caller may read it, without the model's view permission."
            if cleaned.get("public")
            else f"Made {row.key} private: the model's view permission is required."
        )
    if "allow_sensitive_fields" in changed:
        if cleaned.get("allow_sensitive_fields"):
            shown = [f for f in (row.fields or []) if SENSITIVE_FIELD_RE.search(f)]
            notes.append(f"Allowed credential-like fields on {row.key}" + (f": {', '.join(shown)}." if shown else "."))
        else:
            notes.append(f"No longer allows credential-like fields on {row.key}.")
    return notes


class QueryToolForm(FormErrorsMixin, forms.ModelForm):
    exposure = forms.ChoiceField(help_text=_("The exposure it queries."))

    class Meta:
        model = QueryTool
        fields = (
            "name",
            "enabled",
            "title",
            "description",
            "exposure",
            "operation",
            "fixed_filters",
            "caller_filters",
            "ordering",
            "limit",
        )

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        rows = {str(row) for row in ModelExposure.objects.select_related("content_type")}
        keys = sorted(set(default_exposures.exposures) | rows)
        self.fields["exposure"].choices = [(k, k) for k in keys]


@admin.register(QueryTool)
class QueryToolAdmin(admin.ModelAdmin):
    form = QueryToolForm
    list_display = ("name", "exposure", "operation", "enabled", "updated")
    list_filter = ("enabled", "operation")
    search_fields = ("name", "title", "description")
    readonly_fields = ("available_filters", "who")
    fieldsets = (
        (None, {"fields": ("name", "enabled", "title", "description")}),
        (
            _("Query"),
            {"fields": ("exposure", "operation", "fixed_filters", "caller_filters", "available_filters", "ordering", "limit")},
        ),
        (_("Who may use it"), {"fields": ("who",)}),
    )

    @admin.display(description=_("who may use it"))
    def who(self, obj: QueryTool) -> str:
        """Who may read its exposure, and a link to its row in the tool list, where it can be restricted."""
        exposure = find_exposure(obj.exposure) if obj.exposure else None
        text = describe_classes(exposure.permission_classes, model=exposure.model) if exposure is not None else "—"
        row = Tool.objects.filter(name=obj.name, source=Tool.Source.QUERY).first() if obj.pk else None
        if row is None:
            return text
        rule = describe_rule(row)
        return format_html(
            '{}{} (<a href="{}">{}</a>)',
            text,
            f"; {rule}" if rule else "",
            reverse("admin:mcp_app_tool_change", args=[row.pk]),
            _("restrict it in the tool list"),
        )

    @admin.display(description=_("filters the exposure allows"))
    def available_filters(self, obj: QueryTool) -> str:
        exposure = find_exposure(obj.exposure) if obj.exposure else None
        return ", ".join(exposure.filter_specs) if exposure is not None else _("Choose an exposure and save to see them.")


# -- tokens ---------------------------------------------------------------------------------------------------
class TokenStateFilter(admin.SimpleListFilter):
    title = _("state")
    parameter_name = "state"

    def lookups(self, request: Any, model_admin: Any) -> list[tuple[str, Any]]:
        return [("active", _("Active")), ("revoked", _("Revoked")), ("expired", _("Expired"))]

    def queryset(self, request: Any, queryset: Any) -> Any:
        now = timezone.now()
        if self.value() == "active":
            return queryset.filter(revoked__isnull=True).exclude(expires__lte=now)
        if self.value() == "revoked":
            return queryset.filter(revoked__isnull=False)
        if self.value() == "expired":
            return queryset.filter(expires__lte=now)
        return queryset


class TokenForm(forms.ModelForm):
    """``request_user`` is set by :meth:`TokenAdmin.get_form`: who may own the token depends on who asks."""

    request_user: Any = None

    def clean_user(self) -> Any:
        return check_token_owner(self.request_user, self.cleaned_data["user"])


@admin.register(Token)
class TokenAdmin(admin.ModelAdmin):
    """Tokens are shown once, on the page after they are created; only their hash is stored.

    The "connect a client" page (``connect/``, :mod:`mcp_app.connect`) creates one with ready client
    configurations. The owner is picked by searching users (the user admin's search) when the site's user
    admin can search, else by id; staff who may not view users can only make tokens for themselves."""

    form = TokenForm
    # Six columns, the dates as text that may wrap, long names and scopes cut (in full in their tooltips): the list
    # fits 1366 px beside the admin's side bar. The creation date is the state's tooltip.
    list_display = ("name_short", "user", "key_prefix", "scopes_short", "state", "last_used_at")
    list_filter = (TokenStateFilter, ("user", admin.RelatedOnlyFieldListFilter))
    search_fields = ("name", "key_prefix", "user__username")
    raw_id_fields = ("user",)  # when the user admin cannot search (see formfield_for_foreignkey)
    actions = ["revoke"]

    def get_form(self, request: Any, obj: Any = None, change: bool = False, **kwargs: Any) -> Any:
        form = super().get_form(request, obj, change=change, **kwargs)
        return type(form.__name__, (form,), {"request_user": request.user})

    def formfield_for_foreignkey(self, db_field: Any, request: Any, **kwargs: Any) -> Any:
        if db_field.name == "user":
            kwargs["queryset"] = users_to_pick(request.user)
            # The search box of the user admin (it has search_fields), rather than a raw id to look up;
            # chosen here rather than in autocomplete_fields, which fails the system checks of a site whose
            # user admin is not registered.
            if not may_pick_any_user(request.user):
                return db_field.formfield(**kwargs)  # a select holding only themselves
            picker = user_picker(self.admin_site)
            if picker is not None:
                return db_field.formfield(widget=picker, **kwargs)
        return super().formfield_for_foreignkey(db_field, request, **kwargs)

    def get_urls(self) -> list[Any]:
        return [path("connect/", self.admin_site.admin_view(self.connect), name="mcp_app_token_connect"), *super().get_urls()]

    def connect(self, request: HttpRequest) -> HttpResponse:
        """The "connect a client" page: for staff who may add tokens."""
        if not self.has_add_permission(request):
            raise PermissionDenied
        return connect_view(self, request)

    def get_fields(self, request: Any, obj: Any = None) -> tuple[str, ...]:
        if obj is None:
            return ("user", "name", "scopes", "expires")
        return ("user", "name", "key_prefix", "scopes", "created", "expires", "last_used", "revoked")

    def get_readonly_fields(self, request: Any, obj: Any = None) -> tuple[str, ...]:
        if obj is None:
            return ()
        return ("user", "key_prefix", "created", "last_used", "revoked")

    def save_model(self, request: Any, obj: Token, form: Any, change: bool) -> None:
        if change:
            super().save_model(request, obj, form, change)
            return
        key = Token.PREFIX + secrets.token_urlsafe(32)
        obj.key_prefix, obj.key_hash = key[:12], Token.hash(key)
        super().save_model(request, obj, form, change)
        self.message_user(
            request,
            format_html(
                _("Copy the token now: it is not stored and will not be shown again. {}"),
                format_html("<code style='user-select: all'>{}</code>", key),
            ),
            messages.WARNING,
        )

    @admin.display(description=_("name"), ordering="name")
    def name_short(self, obj: Token) -> str:
        return _truncated(obj.name, 32)

    @admin.display(description=_("scopes"), ordering="scopes")
    def scopes_short(self, obj: Token) -> str:
        return _truncated(obj.scopes, 24)

    @admin.display(description=_("state"), ordering="expires")
    def state(self, obj: Token) -> str:
        """Revoked, expired or valid, with the date that decides it; the creation date in the tooltip."""
        if obj.revoked:
            text, color = _("revoked %(when)s") % {"when": _when(obj.revoked)}, "#ba2121"
        elif obj.expires and obj.expires <= timezone.now():
            text, color = _("expired %(when)s") % {"when": _when(obj.expires)}, "#ba2121"
        elif obj.expires:
            text, color = _("valid until %(when)s") % {"when": _when(obj.expires)}, ""
        else:
            text, color = _("valid, no expiry"), ""
        created = _("created %(when)s") % {"when": _when(obj.created)}
        return format_html('<span title="{}" style="color: {}">{}</span>', created, color or "inherit", text)

    @admin.display(description=_("last used"), ordering="last_used")
    def last_used_at(self, obj: Token) -> str:
        return _when(obj.last_used)

    @admin.action(description=_("Revoke selected tokens (their sessions end at once)"))
    def revoke(self, request: Any, queryset: Any) -> None:
        revoked = 0
        for token in queryset.filter(revoked__isnull=True):
            token.revoked = timezone.now()
            token.save(update_fields=["revoked"])  # its signal ends the sessions opened with it
            revoked += 1
        self.message_user(request, _("Revoked %(n)d token(s).") % {"n": revoked}, messages.SUCCESS)


# -- audit log -----------------------------------------------------------------------------------------------
@admin.register(ToolCall)
class ToolCallAdmin(admin.ModelAdmin):
    # Fits 1366 px beside the admin's side bar and its filters: the date may wrap, the tool's name may break
    # anywhere, the outcome is its short code (its label and the error message in the tooltip), the session is
    # cut (in full in its tooltip), the transport may break after an underscore.
    list_display = ("created_at", "tool_name", "outcome_code", "user", "session_short", "duration", "via_cell")
    # "session: empty" is every call made without a session: MCP 2026-07-28 requests and the try-it page.
    list_filter = ("outcome", "tool", "via", ("session", admin.EmptyFieldListFilter), ("user", admin.RelatedOnlyFieldListFilter))
    search_fields = ("tool", "error_message", "session__id", "user__username")
    date_hierarchy = "created"
    fields = ("created", "tool", "outcome", "error_message", "arguments_pretty", "user", "session", "duration_ms", "via")
    readonly_fields = fields

    def get_urls(self) -> list[Any]:
        dashboard = path("dashboard/", self.admin_site.admin_view(self.dashboard), name="mcp_app_toolcall_dashboard")
        return [dashboard, *super().get_urls()]

    def dashboard(self, request: HttpRequest) -> HttpResponse:
        """The MCP dashboard (:mod:`mcp_app.dashboard`): for staff who may view the audit log."""
        if not self.has_view_permission(request):
            raise PermissionDenied
        return dashboard_view(self, request)

    @admin.display(description=_("created"), ordering="created")
    def created_at(self, obj: ToolCall) -> str:
        return _when(obj.created)

    @admin.display(description=_("tool"), ordering="tool")
    def tool_name(self, obj: ToolCall) -> str:
        return _name_cell(obj.tool, obj.tool)

    @admin.display(description=_("outcome"), ordering="outcome")
    def outcome_code(self, obj: ToolCall) -> str:
        # The label and the message as the tooltip (a tooltip holds a paragraph; the change page has all of it).
        title = obj.get_outcome_display() + (f": {obj.error_message[:1000]}" if obj.error_message else "")
        return format_html('<span title="{}">{}</span>', title, obj.outcome)

    @admin.display(description=_("session"))
    def session_short(self, obj: ToolCall) -> str:
        return _truncated(obj.session_id, 9) if obj.session_id else "—"

    @admin.display(description=_("ms"), ordering="duration_ms")
    def duration(self, obj: ToolCall) -> str:
        return f"{obj.duration_ms:.1f}"

    @admin.display(description=_("via"), ordering="via")
    def via_cell(self, obj: ToolCall) -> str:
        # A line break allowed after each underscore: "streamable_http" wraps as a word would, not mid-word.
        return format_html_join(mark_safe("_<wbr>"), "{}", ((part,) for part in obj.via.split("_")))

    @admin.display(description=_("arguments"))
    def arguments_pretty(self, obj: ToolCall) -> str:
        return _pretty(obj.arguments)

    def has_add_permission(self, request: Any) -> bool:
        return False

    def has_change_permission(self, request: Any, obj: Any = None) -> bool:
        return False
