"""The admin's "connect a client" page: choose a user and scopes, create a token (shown once, on the answer to
the POST that created it), and copy a ready configuration for Claude Desktop, Cursor, VS Code, the MCP
Inspector or curl with this site's URL and the token filled in.

The page is served by :class:`mcp_app.admin.TokenAdmin` (``/admin/mcp_app/token/connect/``), for staff with
the permission to add tokens. Who may be chosen: anyone, for those who may view users (the picker searches them
as the user admin does); only themselves, for the others. A superuser's token can only be made by a superuser:
it would carry every permission of the site.
"""

from __future__ import annotations

import json
import re
import shlex
import sys
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

from django import forms
from django.conf import settings
from django.contrib.admin.widgets import AutocompleteSelect
from django.contrib.auth import get_permission_codename, get_user_model
from django.http import HttpRequest, HttpResponse
from django.template.response import TemplateResponse
from django.utils import timezone
from django.utils.text import slugify
from django.utils.translation import gettext_lazy as _

from .conf import mcp_settings
from .models import Token
from .protocol.errors import InvalidParams
from .providers.exposures.fields import convert_value

#: RFC 6750 scope tokens: printable ASCII without space, double quote or backslash.
SCOPE_RE = re.compile(r"^[\x21\x23-\x5b\x5d-\x7e]+$")
EXPIRY_CHOICES = [
    ("", _("Never")),
    ("7", _("In 7 days")),
    ("30", _("In 30 days")),
    ("90", _("In 90 days")),
    ("365", _("In a year")),
]


def may_pick_any_user(user: Any) -> bool:
    """Whether ``user`` may make tokens for others: they must be able to see users (the picker lists them)."""
    model = get_user_model()
    return user.has_perm(f"{model._meta.app_label}.{get_permission_codename('view', model._meta)}")


def users_to_pick(request_user: Any) -> Any:
    """The users ``request_user`` may make tokens for: everyone if they may view users, else only themselves."""
    users = get_user_model()._default_manager.order_by(get_user_model().USERNAME_FIELD)
    return users if may_pick_any_user(request_user) else users.filter(pk=request_user.pk)


def check_token_owner(request_user: Any, owner: Any) -> Any:
    """``owner`` if ``request_user`` may make a token for them, else a ValidationError saying why not: the
    server refuses an inactive user's tokens, and a superuser's token carries every permission of the site."""
    if not owner.is_active:
        raise forms.ValidationError(_("%(user)s is inactive: the server refuses their tokens.") % {"user": owner})
    if owner.is_superuser and not request_user.is_superuser:
        raise forms.ValidationError(_("Only a superuser may create a token for a superuser."))
    if owner.pk != request_user.pk and not may_pick_any_user(request_user):
        raise forms.ValidationError(_("You may only create tokens for yourself."))
    return owner


class SafeAutocompleteSelect(AutocompleteSelect):
    """Django's searching select, which looks the submitted value up to show it again: a value the key column
    cannot hold ("abc", a number past 64 bits) would raise there (a 500). Such a value is shown as nothing, and
    the form field reports it as an invalid choice."""

    def optgroups(self, name: str, value: Any, attr: Any = None) -> Any:
        target = self.field.target_field
        usable = []
        for item in value:
            try:
                convert_value(target, item, where="choice")
            except InvalidParams:
                continue
            usable.append(item)
        return super().optgroups(name, usable, attr)


def user_picker(admin_site: Any) -> forms.Widget | None:
    """The admin's searching select over users, when the site's user admin can search them (None otherwise)."""
    model_admin = admin_site._registry.get(get_user_model())
    if model_admin is None or not model_admin.search_fields:
        return None
    return SafeAutocompleteSelect(Token._meta.get_field("user"), admin_site)


class ConnectForm(forms.Form):
    """The token to create: whose, what for, its scopes and when it expires.

    ``request_user`` is who is asking: it decides which users may be chosen (see the module's docstring)."""

    user = forms.ModelChoiceField(queryset=get_user_model()._default_manager.none(), help_text=_("The token acts as this user."))
    name = forms.CharField(
        max_length=100,
        initial="Claude Desktop",
        help_text=Token._meta.get_field("name").help_text,
        widget=forms.TextInput(attrs={"class": "vTextField"}),
    )
    scopes = forms.CharField(
        max_length=200,
        widget=forms.TextInput(attrs={"class": "vTextField"}),
        help_text=_("Space separated. Tokens must carry %(required)s to use the MCP endpoints."),
    )
    expires = forms.TypedChoiceField(choices=EXPIRY_CHOICES, required=False, coerce=int, empty_value=None)

    def __init__(self, *args: Any, request_user: Any, admin_site: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.request_user = request_user
        required = " ".join(mcp_settings.REQUIRED_SCOPES)
        self.fields["scopes"].initial = required or "mcp"
        self.fields["scopes"].help_text = self.fields["scopes"].help_text % {"required": required or _("no particular scope")}
        user_field = self.fields["user"]
        if may_pick_any_user(request_user):
            widget = user_picker(admin_site)
            if widget is not None:
                widget.is_required = True
                user_field.widget = widget  # before the queryset: setting it hands the widget its choices
        else:
            user_field.help_text = _(
                "You may only create tokens for yourself (choosing others needs the permission to view users)."
            )
        user_field.queryset = users_to_pick(request_user)
        user_field.initial = request_user.pk

    def clean_user(self) -> Any:
        return check_token_owner(self.request_user, self.cleaned_data["user"])

    def clean_scopes(self) -> str:
        scopes = self.cleaned_data["scopes"].split()
        bad = [s for s in scopes if not SCOPE_RE.match(s)]
        if bad:
            raise forms.ValidationError(_("Not a valid scope: %(scope)s (no quotes or backslashes).") % {"scope": bad[0][:40]})
        missing = [s for s in mcp_settings.REQUIRED_SCOPES if s not in scopes]
        if missing:
            raise forms.ValidationError(
                _("Add %(missing)s: without it the MCP endpoints refuse the token.") % {"missing": " ".join(missing)}
            )
        return " ".join(dict.fromkeys(scopes))  # duplicates dropped, order kept


@dataclass(frozen=True)
class ClientConfig:
    """One ready configuration: the client, where it goes, whether it runs the server locally, and the text."""

    client: str
    where: str
    local: bool
    text: str

    @property
    def slug(self) -> str:
        return slugify(f"{self.client} {'local' if self.local else 'remote'}")


def _json(value: Any) -> str:
    return json.dumps(value, indent=2)


def client_configs(
    url: str, token: str, *, server_name: str, python: str, manage_py: str, settings_module: str | None = None
) -> list[ClientConfig]:
    """Configurations for each client, for the MCP endpoint at ``url`` with ``token``; the local (stdio) ones
    run ``manage_py mcp_stdio --token`` with ``python`` (and ``DJANGO_SETTINGS_MODULE``, if given)."""
    header = f"Bearer {token}"
    stdio_args = [manage_py, "mcp_stdio", "--token", token]
    stdio: dict[str, Any] = {"command": python, "args": stdio_args}
    if settings_module:
        stdio["env"] = {"DJANGO_SETTINGS_MODULE": settings_module}
    # mcp-remote bridges a stdio-only client to the remote endpoint; the header's value goes through an
    # environment variable because some clients split arguments at spaces ("Bearer <token>").
    remote_bridge = {
        "command": "npx",
        "args": ["-y", "mcp-remote", url, "--header", "Authorization:${AUTH_HEADER}"],
        "env": {"AUTH_HEADER": header},
    }
    native = {"url": url, "headers": {"Authorization": header}}
    init = {
        "jsonrpc": "2.0",
        "id": 1,
        "method": "initialize",
        "params": {"protocolVersion": "2025-11-25", "capabilities": {}, "clientInfo": {"name": "curl", "version": "1"}},
    }
    curl = "\n".join(
        [
            f"curl -si {shlex.quote(url)} \\",
            "  -H 'Content-Type: application/json' -H 'Accept: application/json, text/event-stream' \\",
            f"  -H {shlex.quote('Authorization: ' + header)} \\",
            f"  -d {shlex.quote(json.dumps(init, separators=(',', ':')))}",
            "# then send notifications/initialized and tools/list with the Mcp-Session-Id header of the answer",
        ]
    )
    inspector = " ".join(
        [
            "npx @modelcontextprotocol/inspector --cli",
            shlex.quote(url),
            "--transport http --method tools/list --header",
            shlex.quote("Authorization: " + header),
        ]
    )
    # The Inspector starts the server with an environment of its own: the settings module goes with -e.
    passed = ["-e", f"DJANGO_SETTINGS_MODULE={settings_module}"] if settings_module else []
    local_command = " ".join(shlex.quote(a) for a in [*passed, python, *stdio_args])
    inspector_local = f"npx @modelcontextprotocol/inspector --cli {local_command} --method tools/list"
    return [
        ClientConfig("Claude Desktop", "claude_desktop_config.json", False, _json({"mcpServers": {server_name: remote_bridge}})),
        ClientConfig("Claude Desktop", "claude_desktop_config.json", True, _json({"mcpServers": {server_name: stdio}})),
        ClientConfig("Cursor", "~/.cursor/mcp.json", False, _json({"mcpServers": {server_name: native}})),
        ClientConfig("Cursor", "~/.cursor/mcp.json", True, _json({"mcpServers": {server_name: stdio}})),
        ClientConfig("VS Code", ".vscode/mcp.json", False, _json({"servers": {server_name: {"type": "http", **native}}})),
        ClientConfig("VS Code", ".vscode/mcp.json", True, _json({"servers": {server_name: {"type": "stdio", **stdio}}})),
        ClientConfig("MCP Inspector", _("a terminal"), False, inspector),
        ClientConfig("MCP Inspector", _("a terminal"), True, inspector_local),
        ClientConfig("curl", _("a terminal"), False, curl),
    ]


def endpoint_url(request: HttpRequest) -> str:
    """The MCP endpoint's public URL: ``RESOURCE_URL`` when set (behind a proxy the request's own host may not
    be the public one), else this request's scheme and host with ``PATH``."""
    return mcp_settings.RESOURCE_URL or request.build_absolute_uri(mcp_settings.PATH)


def manage_py_path() -> str:
    """The absolute path of the site's ``manage.py`` where it can be found (``BASE_DIR``, the current
    directory), else a placeholder the reader replaces."""
    for base in (getattr(settings, "BASE_DIR", None), Path.cwd()):
        if base is not None and (Path(base) / "manage.py").is_file():
            return str((Path(base) / "manage.py").resolve())
    return "/path/to/manage.py"


def connect_view(model_admin: Any, request: HttpRequest) -> HttpResponse:
    """GET: the form. POST: create the token and show it once, with the configurations.

    ``model_admin`` is the token admin (its site, its log of additions); the caller has checked the permission
    to add tokens. The answer showing a token is never cached (``Cache-Control: no-store``)."""
    form = ConnectForm(request.POST or None, request_user=request.user, admin_site=model_admin.admin_site)
    token = key = None
    configs: list[ClientConfig] = []
    if request.method == "POST" and form.is_valid():
        days = form.cleaned_data["expires"]
        token, key = Token.create_for(
            form.cleaned_data["user"],
            name=form.cleaned_data["name"],
            scopes=form.cleaned_data["scopes"],
            expires=timezone.now() + timedelta(days=days) if days else None,
        )
        model_admin.log_addition(request, token, [{"added": {}}])
        configs = client_configs(
            endpoint_url(request),
            key,
            server_name=slugify(mcp_settings.SERVER_NAME) or "mcp",
            python=sys.executable,
            manage_py=manage_py_path(),
            settings_module=getattr(settings, "SETTINGS_MODULE", None),
        )
    context = {
        **model_admin.admin_site.each_context(request),
        "opts": Token._meta,
        "title": _("Connect a client"),
        "form": form,
        "media": model_admin.media + form.media,
        "token": token,
        "key": key,
        "configs": configs,
        "url": endpoint_url(request),
    }
    response = TemplateResponse(request, "admin/mcp_app/connect.html", context)
    if key is not None:
        response["Cache-Control"] = "no-store"
    return response
