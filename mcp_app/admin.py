"""Admin screens for MCP sessions."""

from __future__ import annotations

from typing import Any

from django.contrib import admin, messages
from django.utils import timezone
from django.utils.translation import gettext_lazy as _

from .models import Session


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


@admin.register(Session)
class SessionAdmin(admin.ModelAdmin):
    list_display = ("id_short", "client_name", "client_version", "transport", "protocol_version", "created",
                    "last_seen", "is_active")
    list_filter = (ActiveFilter, "transport", "protocol_version", "client_name")
    search_fields = ("id", "client_name")
    readonly_fields = [f.name for f in Session._meta.fields]
    date_hierarchy = "created"
    actions = ["end_sessions"]

    @admin.display(description=_("id"))
    def id_short(self, obj: Session) -> str:
        return f"{obj.id[:12]}…"

    @admin.display(boolean=True, description=_("active"))
    def is_active(self, obj: Session) -> bool:
        return obj.is_active

    def has_add_permission(self, request: Any) -> bool:
        return False

    @admin.action(description=_("End selected sessions"))
    def end_sessions(self, request: Any, queryset: Any) -> None:
        from asgiref.sync import async_to_sync

        from .server import get_server
        from .transports.events import close_session_streams

        ids = list(queryset.filter(ended__isnull=True).values_list("id", flat=True))
        queryset.filter(id__in=ids).update(ended=timezone.now())
        server = get_server()
        for session_id in ids:
            async_to_sync(server.bus.publish)("session.invalidate", session_id=session_id)
            async_to_sync(close_session_streams)(session_id)
        self.message_user(request, _("Ended %(n)d session(s).") % {"n": len(ids)}, messages.SUCCESS)
