"""The audit log's writer: one :class:`~mcp_app.models.ToolCall` row per tools/call, committed before its answer.

The contract (:class:`AuditWriter`), for a call whose tool may change something (written ahead):

- :meth:`~AuditWriter.begin` writes the row, outcome ``started``, *before* the tool runs. If the row cannot
  be written (the database is down), it raises :class:`~mcp_app.availability.Unavailable` and the caller
  must not run the tool: the client is told that nothing was done and to retry (503 where the transport
  can still set a status). So no such tool ever runs unrecorded, and a retry never repeats a side effect.
- :meth:`~AuditWriter.finish` records the outcome. If that fails, the tool has run and its result still
  goes to the client: the failure is logged (session, request id, tool; never the arguments) and the
  update is retried in the background with backoff (:data:`RETRY_DELAYS`); if every retry fails, an
  ERROR says so. A row whose worker died between the two stays ``started``, which the admin filters on.

For a call that changes nothing (a tool marked ``readOnlyHint``, a data tool, an unknown name: ``begin(...,
ahead=False)``, per ``AUDIT_WRITE_AHEAD``) the row is written once, whole, by :meth:`~AuditWriter.finish`,
before the answer leaves: a write ahead would record nothing a crash could lose, since such a call has no
effect but its answer. If that row cannot be written, ``finish`` raises ``Unavailable`` and the answer is
withheld (the client is told to retry, which repeats nothing): no answer leaves unrecorded, either way.

Both writes run on the writer's own thread, not on Django's single thread for synchronous code, which
every request's ORM work shares: the write-ahead adds no round trip there. One thread means one database
connection, kept from group to group while calls keep coming (opening one per group cost more than the
group's writes), replaced after an error that left it unusable, and closed once nothing has been queued for
:data:`CONNECTION_LINGER` seconds. The thread and its groups are :class:`mcp_app.groupcommit.GroupWriter`'s,
which the session rows use too.

Group commit: calls queue their rows (and outcomes) to that thread, which writes whatever queued while it
wrote the previous group, all or nothing: one plain multi-row ``INSERT ... RETURNING`` for new rows where the
backend can (PostgreSQL, SQLite 3.35+; a single statement, atomic without a transaction of its own), one
prepared ``UPDATE`` run for every outcome (``executemany``, in one transaction).
Nothing waits to fill a group, so a
lone call pays no extra latency; under load many calls share one commit. Each caller still waits for its
own group's commit, so the contract above holds per call: a group the database refuses refuses every call
in it (none of their tools runs), and a failed group of outcomes is retried row by row in the background.
At interpreter exit (:meth:`AuditWriter.drain`, registered with :mod:`atexit`) whatever is queued is
written before the process goes, so a worker stopped gracefully loses no row; and the rows of calls the stop
cut short (daphne cancels, or abandons, what still runs when it stops) are marked ``failed`` with
:data:`INTERRUPTED` rather than left ``started`` (:meth:`AuditWriter.interrupted`).
"""

from __future__ import annotations

import asyncio
import atexit
import contextlib
import datetime
import heapq
import itertools
import json
import logging
import math
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import Future
from dataclasses import dataclass
from typing import Any, NamedTuple

from django.db import close_old_connections, connections, models, router, transaction
from django.db.backends.base.operations import BaseDatabaseOperations
from django.utils import timezone

from .availability import RETRY_AFTER, Unavailable, is_outage
from .conf import mcp_settings
from .groupcommit import GroupWriter, Pending, committed, on_live_connection, recycle_connections
from .models import ToolCall

logger = logging.getLogger("mcp_app.audit")

#: Seconds between the background retries of an outcome that could not be recorded (about a minute in
#: all, enough for a database restart or fail-over); then an ERROR is logged and the row stays ``started``.
RETRY_DELAYS: tuple[float, ...] = (0.5, 1, 2, 4, 8, 15, 30)


# -- what a row stores: redacted, capped, storable --------------------------------------------------------------
REDACTED = "[redacted]"


def redact(value: Any, patterns: list[str], *, max_depth: int | None = None) -> Any:
    """A copy of ``value`` with the values of keys containing any of ``patterns`` (lower case) replaced by
    ``"[redacted]"``, in dicts at any depth (lists included).

    Iterative, so no depth raises RecursionError. With ``max_depth``, a dict or list nested deeper than
    that is replaced by a string saying so.
    """
    return _copy(value, patterns, max_depth, clean=False)


#: Arguments nested deeper than this are cut in the audit log (a marker says so); JSON columns and
#: encoders recurse once per level.
AUDIT_MAX_DEPTH = 64


def audit_arguments(arguments: Any, *, patterns: list[str] | None = None, max_bytes: int | None = None) -> Any:
    """``arguments`` as the audit log stores them: redacted (``AUDIT_REDACT_KEYS``), cut below
    :data:`AUDIT_MAX_DEPTH` levels, with what JSON columns refuse made readable text (non-finite numbers,
    NUL characters, lone surrogates, non-JSON objects), and at most ``max_bytes``
    (``AUDIT_MAX_ARGUMENTS_BYTES``) as Django's JSON encoding stores it.

    Over the cap the result is ``{"_truncated": true, "original_bytes": N, "preview": "<the start of the
    redacted arguments' JSON>"}``, itself within the cap.
    """
    return _stored_arguments(arguments, patterns=patterns, max_bytes=max_bytes).value


class _StoredArguments(NamedTuple):
    """Arguments as the audit log stores them (:func:`audit_arguments`), with their JSON as Django's
    ``JSONField`` writes it by default (``json.dumps`` with no options), which measuring them produced."""

    value: Any
    text: str


def _stored_arguments(arguments: Any, *, patterns: list[str] | None = None, max_bytes: int | None = None) -> _StoredArguments:
    """:func:`audit_arguments`, keeping the JSON text it measured: where the backend stores a JSON column as
    that very text (SQLite, MySQL), the writer's INSERT uses it instead of encoding the value a second time."""
    if patterns is None:
        patterns = [p.lower() for p in mcp_settings.AUDIT_REDACT_KEYS]
    if max_bytes is None:
        max_bytes = mcp_settings.AUDIT_MAX_ARGUMENTS_BYTES
    value = _flat_copy(arguments, patterns)
    if value is None:
        value = _copy(arguments, patterns, AUDIT_MAX_DEPTH, clean=True)
    # Django's JSONField writes json.dumps' default (ASCII) form; measuring it bounds every backend's storage.
    text = json.dumps(value)
    if len(text) <= max_bytes:
        return _StoredArguments(value, text)
    marker: dict[str, Any] = {"_truncated": True, "original_bytes": len(text), "preview": ""}
    preview = text[: max(max_bytes - len(json.dumps(marker)), 0)]
    while preview:  # escaping the preview again lengthens it: shrink until the whole marker fits
        marker["preview"] = preview
        text = json.dumps(marker)
        over = len(text) - max_bytes
        if over <= 0:
            return _StoredArguments(marker, text)
        preview = preview[:-over]
    marker["preview"] = ""
    return _StoredArguments(marker, json.dumps(marker))


def _flat_copy(arguments: Any, patterns: list[str]) -> dict[str, Any] | None:
    """The common case of :func:`audit_arguments` without its walk: a dict of a few keys holding ASCII text
    (no NUL), ints, bools, None or finite floats, none of them to redact, stored as it is (a copy). None for
    anything else, which takes the walk."""
    if type(arguments) is not dict or len(arguments) > 16:
        return None
    for key, value in arguments.items():
        if type(key) is not str or not key.isascii() or "\x00" in key:
            return None
        lowered = key.lower()
        if any(p in lowered for p in patterns):
            return None
        kind = type(value)
        if kind is str:
            if not value.isascii() or "\x00" in value:
                return None
        elif kind is float:
            if not math.isfinite(value):
                return None
        elif not (value is None or kind is int or kind is bool):
            return None
    return dict(arguments)


def cap_text(text: str, max_chars: int) -> str:
    """``text`` cut to at most ``max_chars`` characters, ending with a marker saying how long it was; with
    NUL characters and lone surrogates made escapes (text columns refuse them)."""
    text = _clean_text(text)
    if len(text) <= max_chars:
        return text
    marker = f" … [truncated: {len(text)} characters in all]"
    if len(marker) >= max_chars:
        return marker.strip()[:max_chars]
    return text[: max_chars - len(marker)] + marker


def _clean_text(text: str) -> str:
    # PostgreSQL's text and jsonb refuse NUL, and no UTF-8 column holds a lone surrogate: keep both as escapes.
    if "\x00" in text:
        text = text.replace("\x00", "\\u0000")
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        text = text.encode("utf-8", "backslashreplace").decode("utf-8")
    return text


def _leaf(value: Any) -> Any:
    """A scalar as a JSON column can store it."""
    if value is None or isinstance(value, (bool, int)):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else f"[non-finite number: {value}]"
    return _clean_text(value if isinstance(value, str) else str(value))


def _copy(value: Any, patterns: list[str], max_depth: int | None, *, clean: bool) -> Any:
    """The walk behind :func:`redact` and :func:`audit_arguments`, with an explicit stack instead of recursion."""
    root: list[Any] = [None]
    stack: list[tuple[Any, Any, Any, int]] = [(root, 0, value, 0)]
    while stack:
        parent, slot, item, depth = stack.pop()
        if isinstance(item, (dict, list, tuple)) and max_depth is not None and depth >= max_depth:
            parent[slot] = f"[truncated: nested more than {max_depth} levels]"
        elif isinstance(item, dict):
            out: dict[Any, Any] = {}
            parent[slot] = out
            for key, child in item.items():
                if clean:
                    key = _clean_text(key if isinstance(key, str) else str(key))  # JSON keys are strings
                if any(p in str(key).lower() for p in patterns):
                    out[key] = REDACTED
                else:
                    out[key] = None  # keeps the key order; filled when the child is popped
                    stack.append((out, key, child, depth + 1))
        elif isinstance(item, list) or (clean and isinstance(item, tuple)):
            items: list[Any] = [None] * len(item)
            parent[slot] = items
            stack.extend((items, index, child, depth + 1) for index, child in enumerate(item))
        else:
            parent[slot] = _leaf(item) if clean else item
    return root[0]


# -- writing rows ------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class AuditEntry:
    """A call's row, as :meth:`AuditWriter.begin` wrote it (``pk``), or will write it whole once the call ends
    (``pk`` None, ``fields`` and ``arguments`` kept for :meth:`AuditWriter.finish`)."""

    pk: int | None
    tool: str
    session_id: str | None
    request_id: Any
    fields: dict[str, Any] | None = None
    arguments: Any = None


def _insert(fields: dict[str, Any], arguments: Any) -> int:
    # A lone row: one INSERT. Redacting and measuring megabytes of arguments happens here, in the writer's
    # thread, off the event loop. ``fields`` name the outcome too: ``started`` for a row written ahead.
    return _insert_rows([{**fields, "arguments": _stored_arguments(arguments)}])[0]


def _insert_rows(rows: list[dict[str, Any]]) -> list[int]:
    """Write ``rows`` (each a ToolCall's field values by name, arguments already stored as the log keeps them,
    as a value or as the :class:`_StoredArguments` that made it; a missing field takes its default), all or
    none; their pks, in order.

    Plain SQL where the backend returns the new pks from a multi-row INSERT (PostgreSQL, SQLite 3.35+,
    MariaDB 10.5+): one ``INSERT ... VALUES (...), (...) RETURNING pk`` per batch the backend allows, and on
    PostgreSQL one ``INSERT ... SELECT * FROM unnest(...) RETURNING pk`` (:class:`_InsertStatement`). The
    ORM's ``bulk_create`` built the same statement, but compiling it cost more CPU than the database spent
    running it, on the one thread every audit row goes through. Elsewhere one ``save()`` per row, in one
    transaction.

    Rows that fit one statement (the usual group) are that statement alone, in autocommit mode: a single
    statement is atomic by itself, and wrapping it in a transaction of its own cost a ``BEGIN`` and a
    ``COMMIT`` more per group, two more round trips on PostgreSQL, waited for on the writer's thread (a
    fifth of the throughput of audited calls there). More rows than one statement takes go in one
    transaction. Inside a caller's transaction the rows are part of it.
    """
    alias = router.db_for_write(ToolCall)
    connection = connections[alias]
    if not connection.features.can_return_rows_from_bulk_insert:
        with transaction.atomic(using=alias):
            pks = []
            for values in rows:
                if type(values.get("arguments")) is _StoredArguments:
                    values = {**values, "arguments": values["arguments"].value}
                row = ToolCall(**values)
                row.save(force_insert=True, using=alias)
                pks.append(row.pk)
            return pks
    statement = _InsertStatement.of(connection)
    size = max(connection.ops.bulk_batch_size(statement.fields, rows), 1)
    batches = [rows[start : start + size] for start in range(0, len(rows), size)]
    pks = []
    with transaction.atomic(using=alias) if len(batches) > 1 else contextlib.nullcontext(), connection.cursor() as cursor:
        for batch in batches:
            cursor.execute(statement.sql(len(batch)), statement.params(batch))
            pks.extend(row[0] for row in cursor.fetchall())
    return pks


class _InsertStatement:
    """The multi-row ``INSERT ... RETURNING`` of ToolCall rows on one database: its SQL per number of rows,
    and the column readers that turn rows into its parameters. Made once per database alias (and engine)
    instead of once per group; what it keeps of the connection it was made with is the backend's value
    adapters, which hold no state of a connection's own.

    On PostgreSQL the rows go as one array per column, ``INSERT ... SELECT * FROM unnest(CAST(%s AS
    type[]), ...) RETURNING pk``: the same text and ten parameters whatever the group's size. psycopg
    rewrites a statement's placeholders in Python, and caches the rewrite only for short statements with
    few parameters: a ``VALUES`` list of a group's rows missed that cache, and rewriting its hundreds of
    placeholders cost the writer's thread more than the rows' values (a quarter of its time per row).
    The rows come back in the order given, as Django's own ``bulk_create`` relies on for the same form.
    """

    #: SQL is kept for groups up to this many rows (a burst's usual size); bigger ones build theirs each time.
    KEEP_SQL_UP_TO = 64

    _made: dict[tuple[str, str], _InsertStatement] = {}

    def __init__(self, connection: Any) -> None:
        meta = ToolCall._meta
        self.fields = [field for field in meta.concrete_fields if not field.primary_key]
        quote = connection.ops.quote_name
        self.by_column = _arrays_of_rows(connection)
        columns = ", ".join(quote(f.column) for f in self.fields)
        self._head = f"INSERT INTO {quote(meta.db_table)} ({columns}) VALUES "
        self._tail = f" RETURNING {quote(meta.pk.column)}"
        self._one = "(" + ", ".join(["%s"] * len(self.fields)) + ")"
        self._unnest = (
            f"INSERT INTO {quote(meta.db_table)} ({columns}) SELECT * FROM {_unnest(self.fields, connection)}{self._tail}"
        )
        self._columns = [_column_reader(field, connection, as_text=self.by_column) for field in self.fields]
        self._sql: dict[int, str] = {}

    @classmethod
    def of(cls, connection: Any) -> _InsertStatement:
        """The statement of ``connection``'s database (a Django connection wrapper), made on first use."""
        key = (connection.alias, connection.settings_dict["ENGINE"])
        made = cls._made.get(key)
        if made is None:
            made = cls._made[key] = cls(connection)
        return made

    def sql(self, count: int) -> str:
        """The statement inserting ``count`` rows."""
        if self.by_column:
            return self._unnest
        text = self._sql.get(count)
        if text is None:
            text = self._head + ", ".join([self._one] * count) + self._tail
            if count <= self.KEEP_SQL_UP_TO:
                self._sql[count] = text
        return text

    def params(self, rows: list[dict[str, Any]]) -> list[Any]:
        """The parameters of :meth:`sql` for ``rows``: row after row, or one list per column (``by_column``)."""
        columns = self._columns
        if self.by_column:
            return [[read(values) for values in rows] for read in columns]
        return [read(values) for values in rows for read in columns]


def _arrays_of_rows(connection: Any) -> bool:
    """Whether groups of rows and outcomes go to ``connection``'s database as one array per column
    (``unnest``), in one statement: on PostgreSQL, where that saves round trips, and where placeholders are
    rewritten per statement in Python (see :class:`_InsertStatement`). Elsewhere rows go as a ``VALUES``
    list, and outcomes one prepared UPDATE per row: on SQLite a transaction costs no round trip, and
    preparing one longer statement per group size cost two to three times the CPU of one prepared UPDATE
    run per row."""
    return connection.vendor == "postgresql"


def _unnest(fields: Sequence[Any], connection: Any) -> str:
    """``unnest(CAST(%s AS type[]), ...)`` of ``fields``: one array parameter per column, each cast to its
    column's type (an array of NULLs, or of text, would otherwise leave the type to be guessed)."""
    return "unnest({})".format(", ".join(f"CAST(%s AS {field.db_type(connection)}[])" for field in fields))


#: Field classes whose values go to the database as they are (Django's preparation of them only checks and
#: returns the value): a row's str values need no conversion.
_AS_IS = (models.CharField, models.TextField)


def _datetime_adapter(connection: Any) -> Callable[[Any], Any]:
    """The backend's adapter of datetimes, with a shortcut for the usual value on SQLite.

    SQLite's adapter (Django's own, not overridden) stores an aware datetime as its naive ``str()`` in the
    connection's time zone, after checks that cost more than the conversion. ``timezone.now()`` is already
    in that zone (UTC, unless ``DATABASES[...]["TIME_ZONE"]`` says otherwise), so such a value takes the
    conversion alone, which gives the same text; anything else (and every value elsewhere) goes through the
    adapter. The zone is read per value, as the adapter reads it (``USE_TZ`` off makes it None).
    """
    adapt = connection.ops.adapt_datetimefield_value
    # By the method's module rather than by importing SQLite's backend here, which would import (and set up)
    # the sqlite3 driver in every process, PostgreSQL-only sites included.
    if type(connection.ops).adapt_datetimefield_value.__module__ != "django.db.backends.sqlite3.operations":
        return adapt

    def adapt_datetime(value: Any) -> Any:
        if type(value) is datetime.datetime and value.tzinfo is not None and value.tzinfo is connection.timezone:
            return str(value.replace(tzinfo=None))
        return adapt(value)

    return adapt_datetime


def _column_reader(field: Any, connection: Any, *, as_text: bool = False) -> Callable[[dict[str, Any]], Any]:
    """A function giving the value a column of ``field`` gets, as the database stores it, for a row given as
    field values by name (a relation by its object or its pk's attribute name; a missing field takes its
    default).

    Chosen once per statement: Django's generic ``get_db_prep_save`` per value cost more than the INSERT
    itself. Dates and JSON go through the backend's own adapters, a relation's key as its target field
    stores it, a float column's value as a float (as ``get_db_prep_save`` makes it: a column's values must
    be of one type to go as one array), and any other field through ``get_db_prep_save``, so what is stored
    is what the ORM would store. ``as_text``: a JSON value as its JSON text (the statement casts it), which
    is what Django's backends send for a JSON column (``json.dumps`` with the field's encoder).
    """
    name, attname, relation, nullable = field.name, field.attname, field.is_relation, field.null
    stored = field.target_field if relation else field  # a foreign key stores its target's value
    prepare: Callable[[Any], Any] | None
    if type(stored) in _AS_IS:
        prepare = None  # the value as it is
    elif isinstance(stored, models.FloatField):
        prepare = lambda value: value if type(value) is float else field.get_db_prep_save(value, connection)  # noqa: E731
    elif isinstance(stored, models.IntegerField):
        # An int (a user's pk, by a foreign key) is stored as it is: preparing it would only call int() on it.
        prepare = lambda value: value if type(value) is int else field.get_db_prep_save(value, connection)  # noqa: E731
    elif isinstance(stored, models.DateTimeField):
        prepare = _datetime_adapter(connection)
    elif isinstance(stored, models.JSONField):
        encoder = stored.encoder
        # Arguments that come measured (_StoredArguments) carry their JSON already: where the backend stores
        # the column as json.dumps' text (its adapter is Django's default one), or the statement takes text
        # (``as_text``), that text is the value.
        measured_as_text = encoder is None and (
            as_text or type(connection.ops).adapt_json_value is BaseDatabaseOperations.adapt_json_value
        )

        def json_value(value: Any) -> Any:
            if type(value) is _StoredArguments:
                if measured_as_text:
                    return value.text
                value = value.value
            if as_text:
                return json.dumps(value, cls=encoder)
            return connection.ops.adapt_json_value(value, encoder)

        prepare = json_value
    else:
        prepare = lambda value: field.get_db_prep_save(value, connection)  # noqa: E731
    missing = object()

    def read(values: dict[str, Any]) -> Any:
        value = values.get(name, missing)
        if value is missing:
            value = values.get(attname, missing)
            if value is missing:
                value = field.get_default()
        elif relation and value is not None:
            value = value.pk
        if value is None and nullable:
            return None
        return value if prepare is None else prepare(value)

    return read


def _update(pk: int, fields: dict[str, Any]) -> None:
    if not ToolCall.objects.filter(pk=pk).update(**fields):
        # Pruned or deleted meanwhile: nothing to complete, and retrying would not bring it back.
        logger.warning("audit log: tool call row %s is gone; its outcome (%s) was not recorded", pk, fields.get("outcome"))


#: The columns an outcome sets (what :meth:`AuditWriter.finish` passes).
_OUTCOME_FIELDS = ("outcome", "error_message", "duration_ms")


def _update_rows(items: list[tuple[int, dict[str, Any]]]) -> None:
    """Record several outcomes, all or none; the rows that are gone (pruned meanwhile) are looked up only when
    some were missed, and logged.

    On PostgreSQL one statement sets every row, ``UPDATE ... FROM unnest(CAST(%s AS type[]), ...) AS v(pk,
    ...)``, atomic by itself: no ``BEGIN`` and ``COMMIT`` of its own (two more round trips per group), one
    statement for the server to run instead of one per row, and one array per column as the parameters
    (the same statement text whatever the group's size: see :class:`_InsertStatement`). Elsewhere one
    prepared ``UPDATE`` run for every row (``executemany``) in one transaction. Plain SQL rather than
    ``bulk_update``: the ORM's ``CASE`` expression costs more CPU to build than the database spends running
    it, on the one thread every outcome goes through.
    """
    alias = router.db_for_write(ToolCall)
    connection = connections[alias]
    quote = connection.ops.quote_name
    meta = ToolCall._meta
    columns = [meta.get_field(name) for name in _OUTCOME_FIELDS]
    latest = dict(items)  # one outcome per row (the last, as one UPDATE after another would leave it)
    params = [
        [pk] + [field.get_db_prep_save(fields.get(field.name, field.get_default()), connection) for field in columns]
        for pk, fields in latest.items()
    ]
    table, pk_column = quote(meta.db_table), quote(meta.pk.column)
    with connection.cursor() as cursor:
        if _arrays_of_rows(connection):
            names = ["pk", *(f"v{index}" for index in range(len(columns)))]
            cursor.execute(
                "UPDATE {} SET {} FROM {} AS v ({}) WHERE {}.{} = v.pk".format(
                    table,
                    ", ".join(f"{quote(field.column)} = v.v{index}" for index, field in enumerate(columns)),
                    _unnest([meta.pk, *columns], connection),
                    ", ".join(names),
                    table,
                    pk_column,
                ),
                [list(column) for column in zip(*params, strict=True)],
            )
            updated = cursor.rowcount
        else:
            with transaction.atomic(using=alias):
                cursor.executemany(
                    "UPDATE {} SET {} WHERE {} = %s".format(
                        table, ", ".join(f"{quote(field.column)} = %s" for field in columns), pk_column
                    ),
                    [values[1:] + values[:1] for values in params],
                )
                updated = cursor.rowcount
    if updated == len(latest):
        return
    present = set(ToolCall.objects.using(alias).filter(pk__in=list(latest)).values_list("pk", flat=True))
    for pk, fields in latest.items():
        if pk not in present:  # as in _update: pruned meanwhile, nothing to complete
            logger.warning("audit log: tool call row %s is gone; its outcome (%s) was not recorded", pk, fields.get("outcome"))


def _describe(entry: AuditEntry) -> str:
    return f"tools/call {entry.tool!r} (session {entry.session_id or '-'}, request id {entry.request_id!r}, row {entry.pk})"


#: Seconds :meth:`AuditWriter.drain` waits at exit for queued rows to be written.
DRAIN_SECONDS = 30.0
#: The error message of a row whose call the stopping server interrupted before it ended.
INTERRUPTED = "interrupted: the worker stopped before the call ended; no answer was sent"

#: Seconds the writer keeps its connection with nothing queued before closing it (per ``CONN_MAX_AGE``):
#: under load groups follow each other within milliseconds, and reopening per group cost more than writing.
CONNECTION_LINGER = 0.25

#: At most this many rows go in one group (one statement's worth); more wait for the next group.
GROUP_CAP = 500


class _GroupWriter:
    """The audit log's rows and outcomes on a :class:`~mcp_app.groupcommit.GroupWriter` (one thread, group
    commit without waiting: a lone row is written at once, a burst in a few transactions).

    Rows to insert (begins) go first, then outcomes (finishes), each kind at most :data:`GROUP_CAP` a group.
    Each queued item carries a :class:`concurrent.futures.Future` resolved once its group is committed (with
    the pk for a begin), or failed with the group's exception: nothing queued is ever dropped silently.
    """

    def __init__(self, cap: int = GROUP_CAP) -> None:
        # Groups written (or tried), rows and outcomes apart: how well writes are batched (tests, benchmarks).
        self.row_groups = 0
        self.outcome_groups = 0
        self._writer = GroupWriter(
            "mcp_app-audit", order=(self._write_begins, self._write_finishes), cap=cap, idle_close=CONNECTION_LINGER
        )

    def submit_row(self, fields: dict[str, Any], arguments: Any) -> Future[int]:
        """Queue a new row (``fields`` with its outcome: ``started`` ahead of a call, or the call's whole row)."""
        return self._writer.submit(self._write_begins, (fields, arguments))

    def submit_finish(self, pk: int, fields: dict[str, Any]) -> Future[None]:
        return self._writer.submit(self._write_finishes, (pk, fields))

    def pending(self) -> int:
        """Rows and outcomes queued or being written."""
        return self._writer.pending()

    def wait_idle(self, timeout: float) -> bool:
        """Wait until everything queued is written (or has failed); False when ``timeout`` s pass first."""
        return self._writer.wait_idle(timeout)

    def _write_begins(self, items: list[Pending[Any]]) -> None:
        self.row_groups += 1
        if len(items) == 1:  # a lone row: one plain INSERT
            self._insert_each(items)
            return
        rows: list[dict[str, Any]] = []
        ready: list[Pending[Any]] = []
        for item in items:
            fields, raw = item.item
            try:  # redaction is built not to raise; should it, only that call is refused
                arguments = _stored_arguments(raw)
            except Exception as exc:
                item.done.set_exception(exc)
                continue
            rows.append({**fields, "arguments": arguments})
            ready.append(item)
        if not ready:
            return
        try:
            pks = on_live_connection(router.db_for_write(ToolCall), lambda: _insert_rows(rows))
        except Exception as exc:
            if is_outage(exc):
                for item in ready:  # the database is down: every call of the group is refused, none runs
                    item.done.set_exception(exc)
                return
            # Not an outage, so perhaps one row's value that a column refuses: write the rows one by one,
            # so that only that call is refused.
            recycle_connections()
            self._insert_each(ready)
            return
        for item, pk in zip(ready, pks, strict=True):
            item.done.set_result(pk)

    @staticmethod
    def _insert_each(items: list[Pending[Any]]) -> None:
        alias = router.db_for_write(ToolCall)
        for item in items:
            try:
                item.done.set_result(on_live_connection(alias, lambda item=item: _insert(*item.item)))
            except Exception as exc:
                item.done.set_exception(exc)

    def _write_finishes(self, items: list[Pending[Any]]) -> None:
        self.outcome_groups += 1
        alias = router.db_for_write(ToolCall)
        try:
            if len(items) == 1:
                on_live_connection(alias, lambda: _update(*items[0].item))
            else:
                on_live_connection(alias, lambda: _update_rows([item.item for item in items]))
        except Exception as exc:
            for item in items:  # each is retried in the background by its caller (AuditWriter._defer)
                item.done.set_exception(exc)
            return
        for item in items:
            item.done.set_result(None)


class _Retrier:
    """Background retries of outcome updates, on a daemon thread of their own, so they outlive the event
    loop of the request that failed (``async_to_sync`` callers close theirs) and never hold up a request."""

    def __init__(self, delays: Sequence[float]) -> None:
        self.delays = tuple(delays)
        self._heap: list[tuple[float, int, int, AuditEntry, dict[str, Any]]] = []
        self._order = itertools.count()
        self._busy = 0
        self._cond = threading.Condition()
        self._thread: threading.Thread | None = None

    def submit(self, entry: AuditEntry, fields: dict[str, Any], *, delay: float | None = None) -> None:
        """Retry ``_update(entry.pk, fields)`` after ``delay`` (the first backoff step by default)."""
        due = time.monotonic() + (self.delays[0] if delay is None else delay)
        with self._cond:
            heapq.heappush(self._heap, (due, next(self._order), 0, entry, fields))
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(target=self._run, name="mcp_app-audit-retry", daemon=True)
                self._thread.start()
            self._cond.notify()

    def pending(self) -> int:
        """Outcomes waiting to be recorded (queued or being tried)."""
        with self._cond:
            return len(self._heap) + self._busy

    def wait_idle(self, timeout: float) -> bool:
        """Wait until nothing is pending; False when ``timeout`` seconds pass first."""
        with self._cond:
            return self._cond.wait_for(lambda: not (self._heap or self._busy), timeout)

    def report_pending(self) -> None:
        """Log an ERROR for every outcome still unrecorded (at interpreter exit: never dropped silently)."""
        with self._cond:
            left = [item[3] for item in self._heap]
        for entry in left:
            logger.error(
                "audit log: the outcome of %s was never recorded (the process is exiting); its row stays 'started'",
                _describe(entry),
            )

    def _run(self) -> None:
        while True:
            with self._cond:
                while not self._heap:
                    self._cond.wait()
                due = self._heap[0][0]
                now = time.monotonic()
                if due > now:
                    self._cond.wait(due - now)
                    continue
                _, _, attempt, entry, fields = heapq.heappop(self._heap)
                self._busy += 1
            try:
                self._attempt(entry, fields, attempt)
            finally:
                with self._cond:
                    self._busy -= 1
                    self._cond.notify_all()

    def _attempt(self, entry: AuditEntry, fields: dict[str, Any], attempt: int) -> None:
        try:
            close_old_connections()  # a connection broken by the outage is replaced, not reused
            _update(entry.pk, fields)
        except Exception as exc:
            attempt += 1
            if attempt >= len(self.delays):
                logger.error(
                    "audit log: gave up recording the outcome (%s) of %s after %d retries: %s: %s; its row stays 'started'",
                    fields.get("outcome"),
                    _describe(entry),
                    attempt,
                    type(exc).__name__,
                    exc,
                )
                return
            with self._cond:
                heapq.heappush(self._heap, (time.monotonic() + self.delays[attempt], next(self._order), attempt, entry, fields))
            return
        finally:
            close_old_connections()
        logger.info(
            "audit log: recorded the outcome (%s) of %s on retry %d", fields.get("outcome"), _describe(entry), attempt + 1
        )


class AuditWriter:
    """Writes each tools/call's audit row ahead of the call, and its outcome after (see the module's doc).

    ``retry_delays``: seconds between the background retries of an outcome update (:data:`RETRY_DELAYS`).
    """

    def __init__(self, *, retry_delays: Sequence[float] = RETRY_DELAYS) -> None:
        if not retry_delays:
            raise ValueError("retry_delays needs at least one delay")
        # One thread with its own database connection, away from Django's shared sync thread, writing rows
        # and outcomes in groups.
        self._group = _GroupWriter()
        self._retrier = _Retrier(retry_delays)
        # The rows written ahead whose call has not yet queued its outcome (by pk): what a stop interrupts.
        # Filled from the writer's thread (the begin's completion), emptied from the event loop (finish).
        self._open: set[int] = set()
        self._open_lock = threading.Lock()
        atexit.register(self.drain)

    @property
    def row_groups(self) -> int:
        """Groups of rows written (or tried) so far: fewer than the calls when calls come together."""
        return self._group.row_groups

    @property
    def outcome_groups(self) -> int:
        """Groups of outcomes written (or tried) so far."""
        return self._group.outcome_groups

    async def begin(
        self,
        *,
        tool: str,
        arguments: Any,
        user: Any = None,
        session_id: str | None = None,
        request_id: Any = None,
        via: str = "",
        ahead: bool = True,
    ) -> AuditEntry:
        """Write the call's row (outcome ``started``) and return it; with ``ahead=False`` (a call that changes
        nothing) write nothing yet: :meth:`finish` writes the whole row.

        Raises :class:`~mcp_app.availability.Unavailable` when the row cannot be written: the tool must then
        not run. A cancellation while writing still completes the row, as cancelled (outcome ``failed``).
        """
        tool = _clean_text(tool[:128])
        fields = {"session_id": session_id, "user": user, "tool": tool, "via": str(via)[:20], "created": timezone.now()}
        if not ahead:
            return AuditEntry(None, tool, session_id, request_id, fields, arguments)
        write = self._group.submit_row({**fields, "outcome": ToolCall.Outcome.STARTED}, arguments)
        # Before the caller's wrap_future: the pk is known as open before anyone can finish it.
        write.add_done_callback(self._opened)
        try:
            # committed(): a cancelled caller leaves its row to be written (and then marked cancelled).
            pk = await committed(write)
        except asyncio.CancelledError:
            # On the concurrent future, so it runs (in the writer's thread) even if this loop is closed by then.
            write.add_done_callback(lambda done: self._cancelled_before_start(done, tool, session_id, request_id))
            raise
        except Exception as exc:
            where = f"session {session_id or '-'}, request id {request_id!r}"
            if is_outage(exc):
                logger.warning(
                    "audit log: tools/call %r (%s) refused, not run: its row could not be written (%s: %s)",
                    tool,
                    where,
                    type(exc).__name__,
                    str(exc).strip()[:300],
                )
            else:
                logger.error(
                    "audit log: tools/call %r (%s) refused, not run: its row could not be written", tool, where, exc_info=exc
                )
            shown = tool if len(tool) <= 100 else f"{tool[:100]}…"
            raise Unavailable(
                f"Service Unavailable: the call to tool '{shown}' was not run, because its audit record "
                f"could not be written (the database is unavailable); nothing was done. Retry in "
                f"{RETRY_AFTER} s."
            ) from None
        return AuditEntry(pk, tool, session_id, request_id)

    async def finish(self, entry: AuditEntry, *, outcome: str, message: str = "", seconds: float = 0.0) -> bool:
        """Record the call's outcome; True when it was recorded now.

        For a row written ahead, never raises for a failed write: the tool has run, so its result must reach
        the client. A failure is logged and the update retried in the background (False is returned); a
        cancellation while writing lets the write finish (and be retried if it fails), then propagates.

        For a row not written ahead (``begin(..., ahead=False)``) the whole row is written now, and a failure
        raises :class:`~mcp_app.availability.Unavailable`: the answer must then be withheld (nothing was
        changed, so the client may simply retry). A cancellation while writing lets the write finish.
        """
        fields = {
            "outcome": outcome,
            "error_message": cap_text(message, mcp_settings.AUDIT_MAX_ERROR_CHARS),
            "duration_ms": round(seconds * 1000, 3),
        }
        if entry.pk is None:
            await self._write_whole(entry, fields)
            return True
        with self._open_lock:
            self._open.discard(entry.pk)
        write = self._group.submit_finish(entry.pk, fields)
        try:
            await committed(write)
        except asyncio.CancelledError:
            write.add_done_callback(
                lambda done: done.cancelled() or done.exception() is None or self._defer(entry, fields, done.exception())
            )
            raise
        except Exception as exc:
            self._defer(entry, fields, exc)
            return False
        return True

    async def _write_whole(self, entry: AuditEntry, outcome: dict[str, Any]) -> None:
        """The row of a call not written ahead, whole; raises ``Unavailable`` when it cannot be written."""
        write = self._group.submit_row({**(entry.fields or {}), **outcome}, entry.arguments)
        try:
            # committed(): a cancelled caller (the client went away) still leaves its row.
            await committed(write)
        except asyncio.CancelledError:
            write.add_done_callback(lambda done: self._lost(done, entry, outcome))
            raise
        except Exception as exc:
            self._lost(write, entry, outcome)
            shown = entry.tool if len(entry.tool) <= 100 else f"{entry.tool[:100]}…"
            raise Unavailable(
                f"Service Unavailable: the result of tool '{shown}' was withheld, because its audit record "
                f"could not be written (the database is unavailable). The tool changes nothing, so the call "
                f"can be repeated: retry in {RETRY_AFTER} s."
            ) from exc

    @staticmethod
    def _lost(write: Future[int], entry: AuditEntry, outcome: dict[str, Any]) -> None:
        """Log a whole row that could not be written (its answer, if any was due, was withheld)."""
        if write.cancelled() or write.exception() is None:
            return
        exc = write.exception()
        where = f"tools/call {entry.tool!r} (session {entry.session_id or '-'}, request id {entry.request_id!r})"
        if is_outage(exc):  # the database is down: expected at times, no traceback
            logger.warning(
                "audit log: the row of %s, outcome %s, could not be written (%s: %s); its answer was withheld",
                where,
                outcome["outcome"],
                type(exc).__name__,
                str(exc).strip()[:300],
            )
        else:  # a bug, or a value a column refused: the traceback says which
            logger.error(
                "audit log: the row of %s, outcome %s, could not be written; its answer was withheld",
                where,
                outcome["outcome"],
                exc_info=exc,
            )

    def _defer(self, entry: AuditEntry, fields: dict[str, Any], exc: BaseException | None) -> None:
        logger.warning(
            "audit log: the outcome (%s) of %s could not be recorded (%s: %s); the result was delivered, "
            "retrying in the background",
            fields["outcome"],
            _describe(entry),
            type(exc).__name__,
            str(exc).strip()[:300],
        )
        self._retrier.submit(entry, fields)

    def _opened(self, write: Future[int]) -> None:
        if not write.cancelled() and write.exception() is None:
            with self._open_lock:
                self._open.add(write.result())

    def interrupted(self) -> int:
        """Mark the rows this process wrote ahead and whose call never reached its outcome (the server stopped
        it: daphne cancels, or abandons, what runs when it shuts down) ``failed``, saying so, instead of leaving
        them ``started``; return how many. Only rows still ``started`` change (a background retry may have
        recorded one meanwhile). Called by :meth:`drain` at exit."""
        with self._open_lock:
            pks, self._open = sorted(self._open), set()
        if not pks:
            return 0
        try:
            changed = ToolCall.objects.filter(pk__in=pks, outcome=ToolCall.Outcome.STARTED).update(
                outcome=ToolCall.Outcome.FAILED, error_message=INTERRUPTED
            )
        except Exception as exc:  # the database is gone too: the rows stay 'started', which the admin filters on
            logger.error("audit log: %d calls interrupted by the stop stay 'started' (%s: %s)", len(pks), type(exc).__name__, exc)
            return 0
        finally:
            close_old_connections()
        if changed:
            logger.warning("audit log: %d calls were interrupted by the stop (recorded as failed, no answer sent)", changed)
        return changed

    def _cancelled_before_start(self, write: Future[int], tool: str, session_id: str | None, request_id: Any) -> None:
        if write.cancelled() or write.exception() is not None:
            return  # no row, and no tool ran
        entry = AuditEntry(write.result(), tool, session_id, request_id)
        self._retrier.submit(
            entry,
            {"outcome": "failed", "error_message": "cancelled by the client before it started", "duration_ms": 0.0},
            delay=0,
        )

    def pending(self) -> int:
        """Rows and outcomes queued for the writer or waiting for a background retry."""
        return self._group.pending() + self._retrier.pending()

    def wait_idle(self, timeout: float = 10.0) -> bool:
        """Wait until everything queued is written and no outcome update is pending (tests, graceful
        shutdown); False after ``timeout`` s."""
        deadline = time.monotonic() + timeout
        return self._group.wait_idle(timeout) and self._retrier.wait_idle(max(deadline - time.monotonic(), 0))

    def drain(self, timeout: float = DRAIN_SECONDS) -> bool:
        """At interpreter exit (registered with :mod:`atexit`): write everything still queued, so a worker
        stopped gracefully loses no row; mark the calls the stop interrupted (:meth:`interrupted`), so none
        is left ``started``; then log an ERROR for each outcome still unrecorded. False when
        ``timeout`` s pass with rows still queued (an ERROR says how many)."""
        written = self._group.wait_idle(timeout)
        if not written:
            logger.error(
                "audit log: %d rows or outcomes were still queued after %.0f s at exit (the database is not answering)",
                self._group.pending(),
                timeout,
            )
        self.interrupted()
        self._retrier.report_pending()
        return written


#: The writer the default provider uses.
default_writer = AuditWriter()
