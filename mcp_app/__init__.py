"""mcp_app: turn a Django site into a Model Context Protocol server.

The decorators (``tool``, ``resource``, ``prompt``) and content helpers are re-exported here for
``from mcp_app import tool``. Nothing in this module touches Django models, so importing it is safe
before the app registry is ready.
"""

from .content import Audio, EmbeddedResource, Image, ResourceLink, Text, ToolResult
from .protocol.context import RequestContext as Context
from .providers.code import ToolError, default_registry, prompt, resource, tool

__version__ = "0.1.0"

__all__ = [
    "Audio",
    "Context",
    "EmbeddedResource",
    "Image",
    "ResourceLink",
    "Text",
    "ToolError",
    "ToolResult",
    "__version__",
    "default_registry",
    "prompt",
    "resource",
    "tool",
]
