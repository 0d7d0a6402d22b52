"""The template engine for prompts authored in the admin: variables, filters and logic tags, nothing else.

A prompt's messages are rendered for any caller allowed to use the prompt, so they must not reach beyond
the prompt's own arguments: ``{% debug %}`` dumps the context and ``sys.modules``, ``{% include %}``,
``{% extends %}`` and ``{% load %}`` read templates and tag libraries from the site, ``{% url %}`` and
``{% csrf_token %}`` reveal the site's routes and tokens. None of those exists in this engine, it has no
template loaders and no libraries, and a template that uses one is refused when it is saved
(:meth:`mcp_app.models.PromptMessage.clean`) and again when it is rendered.

Django only: no mcp_app imports, so that models and the provider can both use it.
"""

from __future__ import annotations

from typing import Any

from django.template import Context, Engine, Library, Template, TemplateSyntaxError, defaultfilters, defaulttags
from django.template.base import Lexer, TokenType

#: The built-in tags prompt templates may use: logic and text shaping over the arguments.
ALLOWED_TAGS: frozenset[str] = frozenset(
    {
        "autoescape",
        "comment",
        "cycle",
        "filter",
        "firstof",
        "for",
        "if",
        "ifchanged",
        "now",
        "regroup",
        "resetcycle",
        "spaceless",
        "templatetag",
        "verbatim",
        "widthratio",
        "with",
    }
)
# Tags that only continue or close an allowed one ({% else %}, {% endfor %}, ...); their parent checks them.
_INNER_TAGS = frozenset({"else", "elif", "empty"} | {f"end{name}" for name in ALLOWED_TAGS})


class PromptTemplateError(ValueError):
    """A prompt template that is invalid or uses what prompts may not; the message is for the admin."""


class _PromptEngine(Engine):
    """An engine whose only built-ins are :data:`ALLOWED_TAGS` and Django's filters."""

    def get_template_builtins(self, builtins: Any) -> list[Library]:
        library = Library()
        library.tags = {name: tag for name, tag in defaulttags.register.tags.items() if name in ALLOWED_TAGS}
        library.filters = dict(defaultfilters.register.filters)
        return [library]


# Prompts are plain text for a model, not HTML: no autoescaping. No loaders and no libraries: nothing to
# include, extend or load even if a tag for it existed.
_engine = _PromptEngine(autoescape=False, loaders=[], libraries={}, debug=False, string_if_invalid="")


def compile_prompt_template(source: str) -> Template:
    """Compile ``source`` with the restricted engine.

    Raises :class:`PromptTemplateError` naming a tag prompts may not use (and the ones they may), or the
    syntax error.
    """
    for token in Lexer(source).tokenize():
        if token.token_type != TokenType.BLOCK:
            continue
        name = (token.split_contents() or [""])[0]
        if name and name not in ALLOWED_TAGS and name not in _INNER_TAGS:  # an empty tag: the parser says so
            raise PromptTemplateError(
                f"Prompt templates may not use {{% {name} %}} (line {token.lineno}): they can only use the "
                f"arguments as variables, filters, and the tags {', '.join(sorted(ALLOWED_TAGS))}."
            )
    try:
        return _engine.from_string(source)
    except TemplateSyntaxError as exc:
        raise PromptTemplateError(f"Invalid template: {exc}") from None


def render_prompt_template(source: str, values: dict[str, Any]) -> str:
    """Render ``source`` with ``values`` as its only variables; raises :class:`PromptTemplateError`."""
    return compile_prompt_template(source).render(Context(values, autoescape=False))
