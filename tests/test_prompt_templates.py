"""Prompt templates authored in the admin render with a restricted engine: the arguments as variables,
filters and logic tags, nothing that loads, includes, reverses or debugs. A template that uses more is
refused when saved (model validation and the admin form) and, if it reached the database anyway, answers a
clear JSON-RPC error when a client asks for it."""

from __future__ import annotations

import logging
from typing import Any

import pytest
from asgiref.sync import async_to_sync
from django.core.exceptions import ValidationError
from django.test import override_settings

from mcp_app.conf import mcp_settings
from mcp_app.models import Prompt, PromptArgument, PromptMessage
from mcp_app.prompt_templates import ALLOWED_TAGS, PromptTemplateError, compile_prompt_template, render_prompt_template
from mcp_app.protocol.errors import INTERNAL_ERROR, McpError
from tests.contexts import ctx_for

pytestmark = pytest.mark.django_db(transaction=True)

FORBIDDEN = [
    ("{% debug %}", "debug"),
    ("{% load static %}{% static 'x.css' %}", "load"),
    ("{% include 'admin/base.html' %}", "include"),
    ("{% ssi '/etc/passwd' %}", "ssi"),
    ("{% url 'admin:index' %}", "url"),
    ("{% extends 'admin/base.html' %}", "extends"),
    ("{% block content %}x{% endblock %}", "block"),
    ("{% csrf_token %}", "csrf_token"),
    ("{% querystring %}", "querystring"),
    ("{% lorem %}", "lorem"),
    ("Hi {% if topic %}{% debug %}{% endif %}", "debug"),
    ("{% for c in topic %}{% include 'x.html' %}{% endfor %}", "include"),
]


def get_prompt(name: str, arguments: dict[str, str]) -> dict[str, Any]:
    mcp_settings.PROVIDER.invalidate()
    return async_to_sync(mcp_settings.PROVIDER.get_prompt)(name, arguments, ctx_for())


def prompt_with(template: str) -> Prompt:
    prompt = Prompt.objects.create(name="leaky")
    PromptArgument.objects.create(prompt=prompt, name="topic")
    PromptMessage.objects.create(prompt=prompt, role="user", template=template)  # no validation: as a fixture would
    return prompt


# -- what prompts may use ------------------------------------------------------------------------------------
def test_variables_filters_and_logic_tags_render() -> None:
    source = (
        "{# a note #}{% comment %}ignored{% endcomment %}"
        "{{ topic|upper }} {{ missing|default:'none' }} {{ topic|truncatechars:4 }}"
        "{% if topic == 'django' %} yes{% elif topic %} maybe{% else %} no{% endif %}"
        "{% for c in topic %}{% cycle 'a' 'b' %}{% empty %}-{% endfor %}"
        "{% with t=topic|length %} {{ t }}{% endwith %}"
        " {% firstof missing topic %} {% widthratio 5 10 100 %}"
        "{% spaceless %} <b> x </b> {% endspaceless %}"
        "{% filter lower %} LOW{% endfilter %}{% autoescape on %} <{{ topic }}>{% endautoescape %}"
        " {% verbatim %}{% debug %}{{ raw }}{% endverbatim %} {% templatetag openblock %}"
        "{% for c in 'aab' %}{% ifchanged c %}{{ c }}{% endifchanged %}{% endfor %}"
        " {% now 'Y' as year %}{{ year|length }}"
    )
    assert render_prompt_template(source, {"topic": "django"}) == (
        "DJANGO none dja… yesababab 6 django 50<b> x </b> low <django> {% debug %}{{ raw }} {%ab 4"
    )


def test_allowed_tags_are_logic_and_text_only() -> None:
    assert not ALLOWED_TAGS & {"debug", "load", "include", "extends", "block", "url", "csrf_token", "ssi", "querystring"}


def test_the_arguments_are_the_only_context() -> None:
    # No request, no settings, no user: the context holds the arguments (and True/False/None) only.
    assert render_prompt_template("[{{ request }}{{ user }}{{ settings }}{{ perms }}]", {"topic": "x"}) == "[]"


# -- refused at save time --------------------------------------------------------------------------------------
@pytest.mark.parametrize(("template", "tag"), FORBIDDEN, ids=[f[1] for f in FORBIDDEN])
def test_forbidden_tags_are_refused_by_the_compiler(template: str, tag: str) -> None:
    with pytest.raises(PromptTemplateError) as info:
        compile_prompt_template(template)
    assert f"{{% {tag} %}}" in str(info.value) and "if, ifchanged" in str(info.value)


@pytest.mark.parametrize(("template", "tag"), FORBIDDEN, ids=[f[1] for f in FORBIDDEN])
def test_forbidden_tags_are_refused_by_model_validation(template: str, tag: str) -> None:
    prompt = Prompt.objects.create(name="checked")
    with pytest.raises(ValidationError) as info:
        PromptMessage(prompt=prompt, role="user", template=template).full_clean()
    assert f"{{% {tag} %}}" in str(info.value.message_dict["template"])


def test_syntax_errors_and_private_attributes_are_refused_too() -> None:
    prompt = Prompt.objects.create(name="checked")
    for template in ("{% if %}", "{{ topic.__class__ }}", "{% for %}", "{{ topic|no_such_filter }}"):
        with pytest.raises(ValidationError):
            PromptMessage(prompt=prompt, role="user", template=template).full_clean()
    PromptMessage(prompt=prompt, role="user", template="About {{ topic|title }}.").full_clean()


def admin_form(template: str) -> dict[str, str]:
    return {
        "name": "from_the_form",
        "enabled": "on",
        "title": "",
        "description": "",
        "arguments-TOTAL_FORMS": "1",
        "arguments-INITIAL_FORMS": "0",
        "arguments-MIN_NUM_FORMS": "0",
        "arguments-MAX_NUM_FORMS": "1000",
        "arguments-0-name": "topic",
        "arguments-0-description": "",
        "arguments-0-completions": "",
        "arguments-0-position": "0",
        "messages-TOTAL_FORMS": "1",
        "messages-INITIAL_FORMS": "0",
        "messages-MIN_NUM_FORMS": "0",
        "messages-MAX_NUM_FORMS": "1000",
        "messages-0-role": "user",
        "messages-0-template": template,
        "messages-0-position": "0",
    }


def test_the_admin_form_refuses_a_forbidden_tag_with_a_form_error(admin_client: Any) -> None:
    page = admin_client.post("/admin/mcp_app/prompt/add/", admin_form("Tell me about {{ topic }} {% debug %}"))
    assert page.status_code == 200
    assert b"Prompt templates may not use {% debug %}" in page.content
    assert not Prompt.objects.filter(name="from_the_form").exists()
    saved = admin_client.post("/admin/mcp_app/prompt/add/", admin_form("Tell me about {{ topic|upper }}"))
    assert saved.status_code == 302, saved.content[:2000]
    assert get_prompt("from_the_form", {"topic": "owls"})["messages"][0]["content"]["text"] == "Tell me about OWLS"


# -- refused at render time, if it got into the database anyway -------------------------------------------------
@override_settings(DEBUG=True)  # {% debug %} dumps sys.modules only with DEBUG on
@pytest.mark.parametrize(("template", "tag"), FORBIDDEN, ids=[f[1] for f in FORBIDDEN])
def test_a_stored_forbidden_template_answers_a_clear_error(template: str, tag: str, caplog: pytest.LogCaptureFixture) -> None:
    prompt_with(template)
    with caplog.at_level(logging.WARNING, logger="mcp_app"), pytest.raises(McpError) as info:
        get_prompt("leaky", {"topic": "x"})
    assert info.value.code == INTERNAL_ERROR
    assert "Prompt 'leaky'" in info.value.message and "administrator" in info.value.message
    assert "sys.modules" not in info.value.message and "Traceback" not in caplog.text
    assert any(f"{{% {tag} %}}" in r.getMessage() and "leaky" in r.getMessage() for r in caplog.records)


@override_settings(DEBUG=True)
def test_debug_no_longer_dumps_modules_through_a_valid_looking_prompt() -> None:
    prompt_with("{% verbatim %}{% debug %}{% endverbatim %} about {{ topic }}")
    text = get_prompt("leaky", {"topic": "x"})["messages"][0]["content"]["text"]
    assert text == "{% debug %} about x"
