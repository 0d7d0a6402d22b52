"""Compact data tool schemas (issue 15): ``filters`` as a few ``patternProperties`` instead of one property
per key, with the same strictness.

The schema must accept exactly the keys the server accepts (:attr:`ModelResource.filter_specs`), each with
the value schema it had as a property of its own; the server still refuses everything else before any
query with -32602 naming what is allowed; and the tools are valid JSON Schema 2020-12 tools on the wire.
"""

from __future__ import annotations

import json
import re
from typing import Any

import jsonschema
import pytest
from asgiref.sync import async_to_sync
from django.contrib.auth.models import User
from django.db import models

from mcp_app.protocol import jsonrpc
from mcp_app.providers.exposures.fields import SAFE_LOOKUPS, FilterSpec, field_lookups
from mcp_app.providers.exposures.resource import ModelResource, default_exposures, filter_patterns
from mcp_app.providers.exposures.serving import generated_tools
from mcp_app.runtime import get_server
from mcpsite.library.models import Book
from tests.contexts import ctx_for
from tests.wire import assert_valid

#: One valid value per JSON Schema shape a filter value can have.
SAMPLES: dict[str, Any] = {
    "string": "x",
    "integer": 3,
    "number": 1.5,
    "boolean": True,
    "date": "2020-01-02",
    "date-time": "2020-01-02T03:04:05+00:00",
    "time": "10:11:12",
    "uuid": "12345678-1234-5678-1234-567812345678",
}


def sample(schema: dict[str, Any]) -> Any:
    """A value ``schema`` accepts."""
    if "enum" in schema:
        return schema["enum"][0]
    if schema.get("type") == "array":
        return [sample(schema["items"])]
    if "format" in schema:
        return SAMPLES[schema["format"]]
    kind = schema["type"]
    return SAMPLES[kind[0] if isinstance(kind, list) else kind]


def unbound_fields() -> dict[str, models.Field]:
    """Fields of every kind a filter knows, with and without choices and NULL."""
    fields: dict[str, models.Field] = {
        "name": models.CharField(max_length=20),
        "notes": models.TextField(null=True),
        "status": models.CharField(max_length=10, choices=[("a", "A"), ("b", "B")]),
        "rank": models.IntegerField(null=True),
        "ratio": models.FloatField(),
        "price": models.DecimalField(max_digits=5, decimal_places=2),
        "active": models.BooleanField(null=True),
        "day": models.DateField(),
        "at": models.DateTimeField(null=True),
        "clock": models.TimeField(),
        "token_id": models.UUIDField(),
        "blob": models.BinaryField(),  # never filtered on
    }
    for name, field in fields.items():
        field.set_attributes_from_name(name)
    return fields


def accepted_keys(fields: dict[str, models.Field]) -> set[str]:
    return {name if lookup == "exact" else f"{name}__{lookup}" for name, f in fields.items() for lookup in field_lookups(f)}


def candidate_keys(fields: dict[str, models.Field]) -> set[str]:
    """Every field with every lookup a client could try, and keys that only look like filters."""
    keys = {f"{name}__{lookup}" for name in fields for lookup in (*SAFE_LOOKUPS, "regex", "startswith", "year")}
    keys |= set(fields) | {"pk", "x", "__in", "name__", "name__in__in", "namex", "xname", "name__user__password"}
    # Not "name\n": JSON Schema patterns are ECMA-262, where "$" is the end, but Python's re (jsonschema's)
    # also matches "$" before a final newline. The server refuses such keys (test below), whatever the schema.
    return keys


def check_patterns_accept_exactly(patterns: dict[str, Any], fields: dict[str, models.Field]) -> None:
    schema = {"type": "object", "additionalProperties": False, "patternProperties": patterns}
    jsonschema.Draft202012Validator.check_schema(schema)
    validator = jsonschema.Draft202012Validator(schema, format_checker=jsonschema.FormatChecker())
    accepted = accepted_keys(fields)
    for key in candidate_keys(fields) | accepted:
        matching = [value for pattern, value in patterns.items() if re.search(pattern, key)]
        if key not in accepted:
            assert not matching, key
            assert not validator.is_valid({key: "x"}) and not validator.is_valid({key: 1}), key
            continue
        # Exactly one entry gives the key its schema: the one it had as a property of its own.
        name, _, lookup = key.partition("__")
        expected = FilterSpec(key, fields[name], lookup or "exact").schema()
        assert matching == [expected], key
        assert validator.is_valid({key: sample(expected)}), key
        wrong = [{"$ne": 1}, None] + ([] if "string" in str(expected.get("type")) else ["x"])
        assert not any(validator.is_valid({key: value}) for value in wrong), key


def test_patterns_accept_exactly_the_filters_of_every_field_kind() -> None:
    fields = unbound_fields()
    check_patterns_accept_exactly(filter_patterns({n: f for n, f in fields.items() if field_lookups(f)}), fields)
    # What each kind takes: no ranges or text matching on a choice field, isnull only where NULL can be.
    assert field_lookups(fields["status"]) == ("exact", "in")
    assert field_lookups(fields["name"]) == ("exact", "iexact", "icontains", "in", "gt", "gte", "lt", "lte")
    assert field_lookups(fields["active"]) == ("exact", "isnull")
    assert field_lookups(fields["blob"]) == ()


@pytest.mark.django_db
def test_the_demo_exposures_schemas_accept_exactly_their_filter_specs() -> None:
    for exposure in default_exposures.exposures.values():
        patterns = exposure.filter_schema()["patternProperties"]
        check_patterns_accept_exactly(patterns, exposure._filter_fields())
        assert accepted_keys(exposure._filter_fields()) == set(exposure.filter_specs)


@pytest.mark.django_db
def test_every_data_tool_is_a_valid_tool_with_a_2020_12_input_schema() -> None:
    admin = User.objects.create_superuser("schemas", password="x")
    ctx = ctx_for(admin)
    answer = async_to_sync(get_server().dispatcher.handle_request)(jsonrpc.Request(1, "tools/list", {}), ctx)
    tools = [t for t in answer["result"]["tools"] if t["name"].startswith("library_")]
    assert len(tools) == 8
    assert_valid(answer["result"], "ListToolsResult", "2025-11-25")
    for tool in tools:
        jsonschema.Draft202012Validator.check_schema(tool["inputSchema"])
        # Wording built from verbose names: "Get one author", never "Get a author".
        text = f"{tool['title']} {tool['description']}"
        assert not re.search(r"\ba [aeiou]", text, re.IGNORECASE), text
    titles = {t["name"]: t["title"] for t in tools}
    assert titles["library_author_get"] == "Get one author" and titles["library_book_list"] == "List books"


def test_a_query_tool_keeps_one_property_per_chosen_filter() -> None:
    exposure = ModelResource(Book, fields=["title", "genre", "published"])
    schema = exposure.filter_schema(["genre", "published__gte"])
    assert schema["properties"] == {
        "genre": {"enum": [code for code, _label in Book.Genre.choices]},
        "published__gte": {"type": "string", "format": "date"},
    }
    assert schema["additionalProperties"] is False


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize(
    ("filters", "allowed"),
    [
        ({"genre__gt": "novel"}, "genre__in"),  # a range on a choice field: its codes' order means nothing
        ({"genre__icontains": "nov"}, "genre__in"),
        ({"genre__iexact": "NOVEL"}, "genre__in"),
        ({"isbn__startswith": "978"}, "isbn__icontains"),
        ({"author__gt": 1}, "author__in"),
        ({"title\n": "x"}, "title__icontains"),
    ],
)
def test_filters_outside_the_schema_are_refused_before_any_query(filters: dict[str, Any], allowed: str) -> None:
    ctx = ctx_for(None)
    message = jsonrpc.Request(1, "tools/call", {"name": "library_book_list", "arguments": {"filters": filters}})
    handle = async_to_sync(get_server().dispatcher.handle_request)
    handle(jsonrpc.Request(1, "tools/list", {}), ctx)  # the catalog is loaded: what follows is the call alone
    with _no_library_query():
        answer = handle(message, ctx)
    error = answer["error"]
    assert error["code"] == -32602 and allowed in error["message"] and allowed in error["data"]["allowed"]
    assert next(iter(filters)) not in error["data"]["allowed"]


class _no_library_query:
    """Fails if a query touches the library's tables while open (the refusal comes before any query)."""

    def __enter__(self) -> None:
        from django.db import connection

        self._context = connection.execute_wrapper(self._check)
        self._context.__enter__()

    def __exit__(self, *exc: Any) -> None:
        self._context.__exit__(*exc)

    @staticmethod
    def _check(execute: Any, sql: str, params: Any, many: bool, context: Any) -> Any:
        assert "library_" not in sql, f"a query ran before the arguments were refused: {sql}"
        return execute(sql, params, many, context)


def test_the_schema_of_a_tool_is_the_one_the_server_enforces() -> None:
    exposure = default_exposures.exposures["library.book"]
    tools = {tool.name: tool for tool in generated_tools(exposure)}
    definition = tools["library_book_list"].definition()
    validator = jsonschema.Draft202012Validator(definition["inputSchema"])
    good = {"query": "river", "filters": {"genre__in": ["novel"], "pages__gte": 100}, "order_by": ["-published"], "limit": 5}
    assert validator.is_valid(good)
    for bad in (
        {"filters": {"genre__gt": "novel"}},
        {"filters": {"genre": "opera"}},
        {"filters": {"pages__gte": "100"}},
        {"order_by": ["-author__name"]},
        {"order_by": ["a", "b", "c", "d"]},
        {"limit": 101},
        {"query": ""},
        {"search": "x"},
    ):
        assert not validator.is_valid(bad), bad
    assert json.dumps(definition).count("maxLength") >= 2  # text values stay bounded in the schema too


@pytest.mark.django_db(transaction=True)
def test_query_tool_rows_that_no_longer_fit_are_not_served_and_break_nothing(caplog: pytest.LogCaptureFixture) -> None:
    """Rows saved without validation (or before choice fields lost their ranges) are logged and skipped:
    tools/list still answers, and the tool is not there to call."""
    from mcp_app.conf import mcp_settings
    from mcp_app.models import QueryTool

    QueryTool.objects.create(name="by_genre_range", exposure="library.book", caller_filters=["genre__gt"])
    QueryTool.objects.create(name="by_author_name", exposure="library.book", ordering="author__name")
    QueryTool.objects.create(name="novels", exposure="library.book", caller_filters=["genre", "genre__in"], ordering="-pages")
    mcp_settings.PROVIDER.invalidate()
    ctx = ctx_for(None)
    handle = async_to_sync(get_server().dispatcher.handle_request)
    names = {t["name"] for t in handle(jsonrpc.Request(1, "tools/list", {}), ctx)["result"]["tools"]}
    assert "novels" in names and not {"by_genre_range", "by_author_name"} & names
    assert (
        "genre__gt are not filters of library.book" in caplog.text
        and "Cannot order library.book by 'author__name'" in caplog.text
    )
    refused = handle(jsonrpc.Request(2, "tools/call", {"name": "by_author_name", "arguments": {}}), ctx)["error"]
    assert refused["code"] == -32602 and "by_author_name" in refused["message"]
