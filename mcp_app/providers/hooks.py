"""Connects the provider layer to the models it builds on: imported once by the app's ``ready()``.

The models cannot import the providers (layers: providers -> Django), so what a row needs from this layer
is registered into :mod:`mcp_app.models` here, at import time:

- :data:`~mcp_app.models.clean_hooks`: ``ModelExposure.clean()`` and ``QueryTool.clean()`` run the checks
  of :mod:`mcp_app.providers.exposures.validation`;
- :data:`~mcp_app.models.code_names`: ``Tool.orphaned`` and ``Prompt.orphaned`` compare a row's name with
  the tools and prompts of the default code registry.

Registering is idempotent: importing this module again replaces the entries instead of adding more.
"""

from __future__ import annotations

from ..models import ModelExposure, QueryTool, clean_hooks, code_names
from .code import default_registry
from .exposures.validation import validate_exposure, validate_query_tool

clean_hooks[ModelExposure] = [validate_exposure]
clean_hooks[QueryTool] = [validate_query_tool]
code_names["tools"] = lambda: default_registry.tools
code_names["prompts"] = lambda: default_registry.prompts
