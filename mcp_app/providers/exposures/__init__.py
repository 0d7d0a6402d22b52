"""Model querysets exposed as MCP resources and data tools, one module per concern.

Nothing is exposed unless listed, and the fields are an allowlist::

    # myapp/mcp.py
    from mcp_app.providers.exposures import expose
    from .models import Book

    expose(Book, fields=["title", "author", "published"], description="The library's catalogue.")

- :mod:`~.fields`: what a model field holds (its kind), the filters a client may set on it
  (:class:`~.fields.FilterSpec`, :data:`~.fields.SAFE_LOOKUPS`) and the conversion of client input into
  values a query can carry.
- :mod:`~.credentials`: the one rule on credentials (models that hold them, password hashes).
- :mod:`~.resource`: :class:`~.resource.ModelResource` (one exposure), :func:`~.resource.expose` and
  the registry of exposures made in code.
- :mod:`~.serializers`: the DRF serializer of an exposure's allowed fields.
- :mod:`~.paging`: keyset pagination (a deep page costs what the first does).
- :mod:`~.serving`: serving the exposures to one caller (:class:`~.serving.DataView`) and the data tools.
- :mod:`~.validation`: checks of the admin's rows (exposures and query tools), run by their ``clean()``.

The package re-exports what sites use in their ``mcp.py`` (:class:`~.resource.ModelResource` and
:func:`~.resource.expose`). Like every module here it needs the app registry ready: it imports the models.
"""

from .resource import ModelResource, expose

__all__ = ["ModelResource", "expose"]
