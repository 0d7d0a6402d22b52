from django.apps import AppConfig


class LibraryConfig(AppConfig):
    """The demo's data: a lending library (authors, books, members, loans) exposed over MCP."""

    name = "mcpsite.library"
    default_auto_field = "django.db.models.BigAutoField"
