"""The demo's home page: what the server offers and how to connect."""

from __future__ import annotations

from django.http import HttpRequest, HttpResponse
from django.shortcuts import render

from mcp_app.conf import mcp_settings
from mcp_app.providers.code import default_registry
from mcp_app.providers.exposures.resource import default_exposures


def home(request: HttpRequest) -> HttpResponse:
    return render(
        request,
        "mcpsite/home.html",
        {
            "mcp_url": request.build_absolute_uri(mcp_settings.PATH),
            "tools": default_registry.tools.values(),
            "resources": default_registry.resources.values(),
            "prompts": default_registry.prompts.values(),
            "exposures": default_exposures.exposures.values(),
        },
    )
