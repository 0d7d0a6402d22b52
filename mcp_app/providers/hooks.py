"""Connects the provider layer to the models it builds on: imported once by the app's ``ready()``.

The models cannot import the providers (layers: providers -> Django), so what a row needs from this layer
is registered into :mod:`mcp_app.models` here, at import time:

- :data:`~mcp_app.models.clean_hooks`: ``ModelExposure.clean()`` and ``QueryTool.clean()`` run the checks
  of :mod:`mcp_app.providers.exposures.validation`; ``Tool.clean()`` checks an edited input schema's
  ``x-mcp-header`` annotations as the code registry checks a tool's;
- :data:`~mcp_app.models.code_names`: ``Tool.orphaned`` and ``Prompt.orphaned`` compare a row's name with
  the tools and prompts of the default code registry.

Registering is idempotent: importing this module again replaces the entries instead of adding more.
"""

from __future__ import annotations

from typing import Any

from django.core.exceptions import ValidationError

from ..models import ModelExposure, QueryTool, Tool, clean_hooks, code_names
from ..protocol.envelope import param_header_problems
from .code import default_registry
from .exposures.validation import validate_exposure, validate_query_tool


def validate_tool_row(row: Any) -> None:
    """A tool row's own input schema may not carry invalid ``x-mcp-header`` annotations (clients drop such
    tools): the same rule :meth:`~mcp_app.providers.code.ToolSpec.from_function` applies to code."""
    problems = param_header_problems(row.input_schema) if isinstance(row.input_schema, dict) else []
    if problems:
        raise ValidationError({"input_schema": [f"Invalid x-mcp-header annotations: {'; '.join(problems)}."]})


clean_hooks[ModelExposure] = [validate_exposure]
clean_hooks[QueryTool] = [validate_query_tool]
clean_hooks[Tool] = [validate_tool_row]
code_names["tools"] = lambda: default_registry.tools
code_names["prompts"] = lambda: default_registry.prompts
