"""Finding spans by what they say: full-text search over one text per span, and attribute clauses.

The search text of a span is built by the database itself, from the span row (so the one writer
needs no change; triggers on `tracing_span` cover every path that stores a span). It holds, one
part per line: the name, the label (agent / tool / model name), the span and trace ids, the kind,
type, operation, model and service, the status message, every span attribute as `key=value`, the
text leaves of the events (names, exception types and messages), and every resource attribute as
`key=value`. An attribute value that is JSON (the input and output messages: a string holding a
JSON list) contributes the text of its leaves, JSON-decoded, so `\\u6771\\u4eac` is indexed as
東京. A long value is cut to its first and last 2,000 characters (a chat's history repeats in every
LLM span; its newest message is at the end).

SQLite: an FTS5 table with the trigram tokenizer (substring matching in any script, case folded);
terms of 3 characters or more are looked up in the index, and the shorter ones (common in Chinese
and Japanese, where a word is often 1 or 2 characters) are checked with LIKE on the same text:
over the index's candidates when there is a longer term, else over every span's text (a scan, the
slow case; see benchmarks/bench_search.py). A trigram index costs several times the insert of the
span itself, so on SQLite it is not built in the writer's transaction: `Indexer`, a thread of the
serving process woken after each commit, indexes new spans in id order, in short transactions of
its own, and records the last id indexed. Searches read the index up to that id and build the text
of the few newer spans on the fly, so a search never misses an acknowledged span, however far the
indexer lags. PostgreSQL: a table with a pg_trgm GIN index, and ILIKE (LIKE for terms without
cased letters), which uses the index for terms of 3 characters or more in the same way. It is
indexed after the commit too: a trigger notes each new span in a backlog table (BACKLOG), and the
same indexer thread, in every serving process and on every host, takes the backlog in chunks (FOR
UPDATE SKIP LOCKED), deleting what it takes in the transaction that writes its index rows, so each
span is indexed once and a crash loses nothing (sequence ids are not committed in order there, so
no last id would do). Searches build the text and attributes of the spans in the backlog on the
fly.

Attribute clauses read an attribute table (ATTRS: one typed row per span and key), filled and
emptied alongside the search text (spans not indexed yet: their JSON is checked). A search or
clauses that hold on many spans (is_broad, clauses_broad: a bounded read of the newest spans
indexed) are not collected whole: the page's query checks each trace as it walks them in its
order (text_exists, clauses_exist), so a first page costs about a page of traces, and its cards
count a bounded number of matches. Text and clauses are each walked or collected by their own
breadth and combine by trace; on PostgreSQL a narrow part's trace ids are collected once per
request (Collected) and shared by the rows, the cards and the count.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import threading
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from django.conf import settings
from django.db import close_old_connections, connections, transaction
from django.db.models import BooleanField, Q
from django.db.models.expressions import RawSQL

from tracing.clauses import ORDERED, Clause

logger = logging.getLogger(__name__)

TABLE = "tracing_span_search"
MAX_TERMS = 8
# A long value is indexed as its head and its tail.
CUT = 2000

# ---------------------------------------------------------------------------------------------
# The index, as the migration creates it.

_KINDS = "CASE {n}.kind WHEN 1 THEN 'INTERNAL' WHEN 2 THEN 'SERVER' WHEN 3 THEN 'CLIENT' " \
    "WHEN 4 THEN 'PRODUCER' WHEN 5 THEN 'CONSUMER' ELSE '' END"  # fmt: skip


# A failed span says so in its text, as the UI names its status: a search for "error" finds it
# even when no name, message or attribute does.
STATUS_WORD = "ERROR"
_SQLITE_STATUS = f"CASE WHEN {{n}}.status_code = 2 THEN ' {STATUS_WORD}' ELSE '' END"
_PG_STATUS = f"CASE WHEN n.status_code = 2 THEN '{STATUS_WORD}' END"


def _sqlite_leaf(value: str, type_: str) -> str:
    """The text of one JSON value of json_each: leaves of a list, an object or a JSON string."""
    tree = "(SELECT group_concat(t.atom, ' ') FROM json_tree({v}) t WHERE t.atom IS NOT NULL)"
    raw = (
        f"CASE WHEN {type_} IN ('object', 'array') THEN {tree.format(v=value)} "
        f"WHEN {type_} = 'text' AND substr({value}, 1, 1) IN ('[', '{{') AND json_valid({value}) "
        f"THEN {tree.format(v=value)} "
        f"WHEN {type_} IN ('true', 'false') THEN {type_} ELSE {value} END"
    )
    return (
        f"(SELECT CASE WHEN length(v) > {2 * CUT} THEN substr(v, 1, {CUT}) || ' … ' || "
        f"substr(v, -{CUT}) ELSE v END FROM (SELECT {raw} AS v))"
    )


def _sqlite_text(n: str) -> str:
    nl = " || char(10) || "
    leaf = _sqlite_leaf("a.value", "a.type")
    attributes = (
        f"COALESCE((SELECT group_concat(a.key || '=' || COALESCE({leaf}, ''), char(10)) "
        f"FROM json_each({n}.attributes_json) a), '')"
    )
    events = (
        f"COALESCE((SELECT substr(group_concat(e.atom, ' '), 1, {2 * CUT}) "
        f"FROM json_tree({n}.events_json) e WHERE e.type = 'text'), '')"
    )
    leaf = _sqlite_leaf("r.value", "r.type")
    resource = (
        f"COALESCE((SELECT group_concat(r.key || '=' || COALESCE({leaf}, ''), char(10)) "
        f"FROM json_each({n}.resource_json, '$.attributes') r), '')"
    )
    return nl.join(
        [
            f"{n}.name",
            f"{n}.label",
            f"{n}.span_id || ' ' || {n}.trace_id",
            f"{_KINDS.format(n=n)} || ' ' || {n}.span_type || ' ' || {n}.operation || ' ' || "
            f"{n}.model || ' ' || {n}.service_name || {_SQLITE_STATUS.format(n=n)}",
            f"{n}.status_message",
            attributes,
            events,
            resource,
        ]
    )


STATE = f"{TABLE}_state"
# The shadow table where FTS5 keeps each row's columns (id = rowid, c0 = trace_id, c1 = body:
# the columns in their declared order; FTS5's documented file format).
CONTENT = f"{TABLE}_content"
SQLITE_CREATE = [
    f"CREATE VIRTUAL TABLE {TABLE} USING fts5(trace_id UNINDEXED, body, tokenize='trigram')",
    # The spans indexed are exactly those with id <= last_id (see index_pending).
    f"CREATE TABLE {STATE} (id INTEGER PRIMARY KEY CHECK (id = 1), last_id INTEGER NOT NULL)",
    f"""CREATE TRIGGER {TABLE}_delete AFTER DELETE ON tracing_span BEGIN
        DELETE FROM {TABLE} WHERE rowid = OLD.id;
    END""",
    # Spans stored before the index.
    f"INSERT INTO {TABLE} (rowid, trace_id, body) SELECT s.id, s.trace_id, {_sqlite_text('s')} "
    "FROM tracing_span s",
    f"INSERT INTO {STATE} (id, last_id) SELECT 1, COALESCE(MAX(id), 0) FROM tracing_span",
]
SQLITE_DROP = [
    f"DROP TRIGGER IF EXISTS {TABLE}_delete",
    f"DROP TABLE IF EXISTS {STATE}",
    f"DROP TABLE IF EXISTS {TABLE}",
]

_PG_KINDS = _KINDS.format(n="n")
# The text of a span (replaced, not dropped, when it changes: the trigger function calls it).
PG_SEARCH_TEXT = f"""CREATE OR REPLACE FUNCTION tracing_span_search_text(n tracing_span)
    RETURNS text LANGUAGE sql STABLE AS $$
        SELECT concat_ws(E'\\n', n.name, n.label, n.span_id || ' ' || n.trace_id,
            concat_ws(' ', {_PG_KINDS}, n.span_type, n.operation, n.model, n.service_name,
                {_PG_STATUS}),
            n.status_message,
            (SELECT string_agg(a.key || '=' || tracing_search_value(a.value), E'\\n')
             FROM jsonb_each(CASE WHEN left(n.attributes_json, 1) = '{{'
                 THEN tracing_jsonb(n.attributes_json, '{{}}'::jsonb) ELSE '{{}}' END) a),
            left(tracing_json_leaves(tracing_jsonb(n.events_json, '[]'::jsonb)), {2 * CUT}),
            (SELECT string_agg(r.key || '=' || tracing_search_value(r.value), E'\\n')
             FROM jsonb_each(coalesce(
                 tracing_jsonb(n.resource_json, '{{}}'::jsonb) -> 'attributes', '{{}}')) r))
    $$"""

# Rows found by (trace_id, id), which either key, (id) before 0013_citus_keys or (trace_id, id)
# since, serves: the migration and its reverse keep this function.
PG_SEARCH_SYNC = f"""CREATE OR REPLACE FUNCTION tracing_span_search_sync() RETURNS trigger
    LANGUAGE plpgsql AS $$
    BEGIN
        IF TG_OP <> 'INSERT' THEN
            DELETE FROM {TABLE} WHERE trace_id = OLD.trace_id AND id = OLD.id;
        END IF;
        IF TG_OP = 'DELETE' THEN
            RETURN OLD;
        END IF;
        INSERT INTO {TABLE} (id, trace_id, body)
        VALUES (NEW.id, NEW.trace_id, tracing_span_search_text(NEW));
        RETURN NEW;
    END $$"""

POSTGRES_CREATE = [
    # A stored JSON column as jsonb, never failing the writer's insert: a NUL a span carried is
    # `\u0000` in JSON, which jsonb refuses; it is dropped (an escaped backslash before `u0000` is
    # text, and kept), and whatever still fails to cast reads as `fallback`. Only that rare path
    # enters the exception block (a subtransaction).
    r"""CREATE FUNCTION tracing_jsonb(t text, fallback jsonb) RETURNS jsonb LANGUAGE plpgsql
    IMMUTABLE AS $$
    BEGIN
        IF strpos(t, '\u0000') = 0 THEN
            RETURN t::jsonb;
        END IF;
        BEGIN
            RETURN regexp_replace(t, '((?:^|[^\\])(?:\\\\)*)\\u0000', '\1', 'g')::jsonb;
        EXCEPTION WHEN others THEN
            RETURN fallback;
        END;
    END $$""",
    "CREATE EXTENSION IF NOT EXISTS pg_trgm",
    # Keyed by trace first, like the spans, so that Citus can keep both in one shard (see
    # DESIGN.md); the key also serves the lookups by trace.
    f"CREATE TABLE {TABLE} (id bigint NOT NULL, trace_id varchar(32) NOT NULL, "
    "body text NOT NULL, PRIMARY KEY (trace_id, id))",
    f"CREATE INDEX {TABLE}_body ON {TABLE} USING gin (body gin_trgm_ops)",
    """CREATE FUNCTION tracing_json_leaves(doc jsonb) RETURNS text LANGUAGE sql IMMUTABLE AS $$
        SELECT string_agg(v #>> '{}', ' ') FROM jsonb_path_query(doc, 'strict $.**') v
        WHERE jsonb_typeof(v) IN ('string', 'number', 'boolean')
    $$""",
    f"""CREATE FUNCTION tracing_search_value(v jsonb) RETURNS text LANGUAGE plpgsql IMMUTABLE AS $$
    DECLARE s text;
    BEGIN
        IF jsonb_typeof(v) IN ('object', 'array') THEN
            s := tracing_json_leaves(v);
        ELSE
            s := v #>> '{{}}';
            IF jsonb_typeof(v) = 'string' AND left(s, 1) IN ('[', '{{') THEN
                BEGIN
                    s := tracing_json_leaves(s::jsonb);
                EXCEPTION WHEN others THEN
                    NULL;  -- not JSON after all: the text as it is
                END;
            END IF;
        END IF;
        IF length(s) > {2 * CUT} THEN
            s := left(s, {CUT}) || ' … ' || right(s, {CUT});
        END IF;
        RETURN coalesce(s, '');
    END $$""",
    PG_SEARCH_TEXT,
    PG_SEARCH_SYNC,
    f"""CREATE TRIGGER {TABLE}_sync AFTER INSERT OR UPDATE OR DELETE ON tracing_span
        FOR EACH ROW EXECUTE FUNCTION tracing_span_search_sync()""",
    f"INSERT INTO {TABLE} (id, trace_id, body) "
    "SELECT s.id, s.trace_id, tracing_span_search_text(s) FROM tracing_span s",
]
POSTGRES_DROP = [
    f"DROP TRIGGER IF EXISTS {TABLE}_sync ON tracing_span",
    "DROP FUNCTION IF EXISTS tracing_span_search_sync()",
    "DROP FUNCTION IF EXISTS tracing_span_search_text(tracing_span)",
    "DROP FUNCTION IF EXISTS tracing_search_value(jsonb)",
    "DROP FUNCTION IF EXISTS tracing_json_leaves(jsonb)",
    "DROP FUNCTION IF EXISTS tracing_jsonb(text, jsonb)",
    f"DROP TABLE IF EXISTS {TABLE}",
]


def reindex_failed(apps: Any, schema_editor: Any) -> None:
    """Index the text of the spans stored failed again, now that it names their status (few
    spans: the partial index on failed spans finds them)."""
    if schema_editor.connection.vendor == "sqlite":
        failed = (
            "SELECT id FROM tracing_span WHERE status_code = 2 "
            f"AND id <= (SELECT last_id FROM {STATE})"
        )
        statements = [
            f"DELETE FROM {TABLE} WHERE rowid IN ({failed})",
            f"INSERT INTO {TABLE} (rowid, trace_id, body) SELECT s.id, s.trace_id, "
            f"{_sqlite_text('s')} FROM tracing_span s WHERE s.id IN ({failed})",
        ]
    else:
        statements = [
            PG_SEARCH_TEXT,
            f"UPDATE {TABLE} f SET body = tracing_span_search_text(s) FROM tracing_span s "
            "WHERE s.trace_id = f.trace_id AND s.id = f.id AND s.status_code = 2",
        ]
    for statement in statements:
        schema_editor.execute(statement, params=None)


# ---------------------------------------------------------------------------------------------
# The attribute table: one row per (span, key) of the span's attributes merged over its
# resource's (a span attribute wins, as in the clauses), typed, so a clause is an index range
# instead of a JSON parse of every candidate span. Filled with the search text (SQLite: by the
# indexer, in the same transaction that moves last_id; PostgreSQL: likewise since
# 0015_search_backlog, by a trigger before), removed with
# the span. `t` is the JSON type: n(umber), s(hort text, in `str`), l(ong text: only its
# existence is indexed), b(oolean, 'true'/'false' in `str`), o(bject, array or null).

ATTRS = "tracing_span_attr"
# Texts up to this many characters are indexed by value (ids, names, models, statuses); longer
# ones (messages, documents) are compared on the span's JSON.
SHORT = 100


def _sqlite_attr_rows(source: str, where: str) -> str:
    """SELECT the attribute rows of the spans `s` matching `where`, from json_each `source`."""
    return (
        f"SELECT s.id, a.key, s.trace_id, CASE a.type WHEN 'integer' THEN 'n' "
        f"WHEN 'real' THEN 'n' WHEN 'text' THEN CASE WHEN length(a.value) <= {SHORT} "
        f"THEN 's' ELSE 'l' END WHEN 'true' THEN 'b' WHEN 'false' THEN 'b' ELSE 'o' END, "
        f"CASE WHEN a.type = 'text' AND length(a.value) <= {SHORT} THEN a.value "
        f"WHEN a.type IN ('true', 'false') THEN a.type END, "
        f"CASE WHEN a.type IN ('integer', 'real') THEN a.value END "
        f"FROM tracing_span s, {source} a WHERE {where}"
    )


def sqlite_fill_attrs(where: str) -> list[str]:
    """The span's own attributes first: OR IGNORE then keeps them over the resource's."""
    insert = f"INSERT OR IGNORE INTO {ATTRS} (span, key, trace_id, t, str, num) "
    return [
        insert + _sqlite_attr_rows("json_each(s.attributes_json)", where),
        insert + _sqlite_attr_rows("json_each(s.resource_json, '$.attributes')", where),
    ]


SQLITE_ATTRS_CREATE = [
    f"CREATE TABLE {ATTRS} (span INTEGER NOT NULL, key TEXT NOT NULL, trace_id TEXT NOT NULL, "
    "t TEXT NOT NULL, str TEXT, num, PRIMARY KEY (span, key)) WITHOUT ROWID",
    # Covers every indexed clause: key (exists), key + str (text, booleans), key + str IS NULL +
    # num (numbers), and gives the trace id without a visit to the span.
    f"CREATE INDEX {ATTRS}_value ON {ATTRS} (key, str, num, t, trace_id)",
    f"DROP TRIGGER IF EXISTS {TABLE}_delete",
    f"""CREATE TRIGGER {TABLE}_delete AFTER DELETE ON tracing_span BEGIN
        DELETE FROM {TABLE} WHERE rowid = OLD.id;
        DELETE FROM {ATTRS} WHERE span = OLD.id;
    END""",
    # Spans already indexed; the indexer does the rest.
    *sqlite_fill_attrs(f"s.id <= (SELECT last_id FROM {STATE})"),
]
SQLITE_ATTRS_DROP = [
    f"DROP TRIGGER IF EXISTS {TABLE}_delete",
    f"""CREATE TRIGGER {TABLE}_delete AFTER DELETE ON tracing_span BEGIN
        DELETE FROM {TABLE} WHERE rowid = OLD.id;
    END""",
    f"DROP TABLE IF EXISTS {ATTRS}",
]

_PG_ATTR_ROWS = f"""SELECT n.id, e.key, n.trace_id,
        CASE jsonb_typeof(e.value) WHEN 'number' THEN 'n' WHEN 'boolean' THEN 'b'
            WHEN 'string' THEN CASE WHEN length(e.value #>> '{{}}') <= {SHORT} THEN 's' ELSE 'l' END
            ELSE 'o' END,
        CASE WHEN jsonb_typeof(e.value) = 'boolean'
            OR (jsonb_typeof(e.value) = 'string' AND length(e.value #>> '{{}}') <= {SHORT})
            THEN e.value #>> '{{}}' END,
        CASE WHEN jsonb_typeof(e.value) = 'number' THEN (e.value #>> '{{}}')::numeric END
    FROM jsonb_each(
        coalesce(CASE WHEN jsonb_typeof(tracing_jsonb(n.resource_json, '{{}}'::jsonb)
                     -> 'attributes') = 'object'
                 THEN tracing_jsonb(n.resource_json, '{{}}'::jsonb) -> 'attributes' END,
                 '{{}}'::jsonb)
        || CASE WHEN left(n.attributes_json, 1) = '{{'
               THEN tracing_jsonb(n.attributes_json, '{{}}'::jsonb) ELSE '{{}}'::jsonb END) e"""

# Like PG_SEARCH_SYNC: either key of the table, before 0013_citus_keys or since, serves it.
PG_ATTRS_SYNC = f"""CREATE OR REPLACE FUNCTION tracing_span_attr_sync() RETURNS trigger
    LANGUAGE plpgsql AS $$
    BEGIN
        IF TG_OP <> 'INSERT' THEN
            DELETE FROM {ATTRS} WHERE trace_id = OLD.trace_id AND span = OLD.id;
        END IF;
        IF TG_OP = 'DELETE' THEN
            RETURN OLD;
        END IF;
        INSERT INTO {ATTRS} (span, key, trace_id, t, str, num)
        {_PG_ATTR_ROWS.replace("n.", "NEW.")};
        RETURN NEW;
    END $$"""

POSTGRES_ATTRS_CREATE = [
    # numeric, not float8: a JSON number beyond float8's range must not fail the writer's insert.
    f"CREATE TABLE {ATTRS} (span bigint NOT NULL, key text NOT NULL, "
    "trace_id varchar(32) NOT NULL, t char(1) NOT NULL, str text, num numeric, "
    "PRIMARY KEY (trace_id, span, key))",
    f"CREATE INDEX {ATTRS}_value ON {ATTRS} (key, str, num) INCLUDE (t, trace_id)",
    PG_ATTRS_SYNC,
    f"""CREATE TRIGGER {ATTRS}_sync AFTER INSERT OR UPDATE OR DELETE ON tracing_span
        FOR EACH ROW EXECUTE FUNCTION tracing_span_attr_sync()""",
    f"INSERT INTO {ATTRS} (span, key, trace_id, t, str, num) SELECT q.* FROM tracing_span n, "
    f"LATERAL ({_PG_ATTR_ROWS}) q",
]
POSTGRES_ATTRS_DROP = [
    f"DROP TRIGGER IF EXISTS {ATTRS}_sync ON tracing_span",
    "DROP FUNCTION IF EXISTS tracing_span_attr_sync()",
    f"DROP TABLE IF EXISTS {ATTRS}",
]


# PostgreSQL, since 0015_search_backlog: indexing after the commit, as on SQLite. Building a
# span's text and attribute rows costs about 0.9 ms of PostgreSQL CPU, seven times its insert;
# the writer's transaction now only notes the span in a backlog (a trigger, so every path that
# stores spans is covered: about 7 us of CPU a span), and indexers take the backlog in chunks.
# A row trigger, not a statement trigger with a transition table: the writer runs one INSERT
# per span anyway (a pipelined executemany), where both cost the same, and Citus refuses
# statement triggers on distributed tables.
# Sequence ids are not committed in id order when several processes write, so a watermark like
# SQLite's last_id could pass a span still being committed: the backlog names each span, and an
# indexer deletes the rows it takes (FOR UPDATE SKIP LOCKED: indexers of several processes share
# the work) and inserts their index rows in the same transaction, so each span is indexed once,
# and a crash rolls both back. Searches read the index and build the text and attributes of the
# spans in the backlog on the fly.
BACKLOG = f"{TABLE}_backlog"

# Writers wait while the triggers change (no span is stored between the two regimes).
_LOCK_SPANS = "LOCK TABLE tracing_span IN SHARE ROW EXCLUSIVE MODE"
PG_BACKLOG_CREATE = [
    _LOCK_SPANS,
    # Keyed by trace first, like the tables it feeds (Citus).
    f"CREATE TABLE {BACKLOG} (trace_id varchar(32) NOT NULL, id bigint NOT NULL, "
    "PRIMARY KEY (trace_id, id))",
    f"""CREATE FUNCTION tracing_span_search_enqueue() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
        INSERT INTO {BACKLOG} (trace_id, id) VALUES (NEW.trace_id, NEW.id);
        RETURN NULL;
    END $$""",
    # The backlog row first: when an indexer holds it, this waits for the indexer's commit, and
    # the next statements (a new snapshot each) see, and delete, the rows it wrote. Spans are
    # not updated but for their cost (tracing.repricing), which no index row holds: UPDATE
    # keeps them.
    f"""CREATE FUNCTION tracing_span_search_forget() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
        DELETE FROM {BACKLOG} WHERE trace_id = OLD.trace_id AND id = OLD.id;
        DELETE FROM {TABLE} WHERE trace_id = OLD.trace_id AND id = OLD.id;
        DELETE FROM {ATTRS} WHERE trace_id = OLD.trace_id AND span = OLD.id;
        RETURN OLD;
    END $$""",
    f"DROP TRIGGER IF EXISTS {TABLE}_sync ON tracing_span",
    f"DROP TRIGGER IF EXISTS {ATTRS}_sync ON tracing_span",
    "DROP FUNCTION IF EXISTS tracing_span_search_sync()",
    "DROP FUNCTION IF EXISTS tracing_span_attr_sync()",
    f"""CREATE TRIGGER {BACKLOG}_enqueue AFTER INSERT ON tracing_span
        FOR EACH ROW EXECUTE FUNCTION tracing_span_search_enqueue()""",
    f"""CREATE TRIGGER {TABLE}_forget AFTER DELETE ON tracing_span
        FOR EACH ROW EXECUTE FUNCTION tracing_span_search_forget()""",
]
# Back to the triggers of the writer's transaction, the backlog indexed first.
PG_BACKLOG_DROP = [
    _LOCK_SPANS,
    f"INSERT INTO {TABLE} (id, trace_id, body) SELECT n.id, n.trace_id, "
    f"tracing_span_search_text(n) FROM {BACKLOG} b "
    "JOIN tracing_span n ON n.trace_id = b.trace_id AND n.id = b.id",
    f"INSERT INTO {ATTRS} (span, key, trace_id, t, str, num) SELECT q.* FROM {BACKLOG} b "
    f"JOIN tracing_span n ON n.trace_id = b.trace_id AND n.id = b.id "
    f"CROSS JOIN LATERAL ({_PG_ATTR_ROWS}) q",
    f"DROP TRIGGER IF EXISTS {BACKLOG}_enqueue ON tracing_span",
    f"DROP TRIGGER IF EXISTS {TABLE}_forget ON tracing_span",
    "DROP FUNCTION IF EXISTS tracing_span_search_enqueue()",
    "DROP FUNCTION IF EXISTS tracing_span_search_forget()",
    f"DROP TABLE IF EXISTS {BACKLOG}",
    PG_SEARCH_SYNC,
    POSTGRES_CREATE[-2],  # the search trigger
    PG_ATTRS_SYNC,
    POSTGRES_ATTRS_CREATE[-2],  # the attribute trigger
]
assert "CREATE TRIGGER" in PG_BACKLOG_DROP[-1] and "CREATE TRIGGER" in PG_BACKLOG_DROP[-3]

# One indexer's chunk: the backlog rows it takes, their search and attribute rows; how many.
# The chunk is a CTE, read once: as a subquery of the DELETE it may be read again as the delete
# proceeds, skip the rows just deleted and take more than `limit`.
_PG_INDEX_CHUNK = f"""WITH chunk AS MATERIALIZED (
        SELECT trace_id, id FROM {BACKLOG} ORDER BY id LIMIT %s FOR UPDATE SKIP LOCKED
    ), taken AS (
        DELETE FROM {BACKLOG} b USING chunk c
        WHERE b.trace_id = c.trace_id AND b.id = c.id RETURNING b.trace_id, b.id
    ), texts AS (
        INSERT INTO {TABLE} (id, trace_id, body) SELECT n.id, n.trace_id,
            tracing_span_search_text(n)
        FROM taken t JOIN tracing_span n ON n.trace_id = t.trace_id AND n.id = t.id
    ), attributes AS (
        INSERT INTO {ATTRS} (span, key, trace_id, t, str, num) SELECT q.*
        FROM taken t JOIN tracing_span n ON n.trace_id = t.trace_id AND n.id = t.id
        CROSS JOIN LATERAL ({_PG_ATTR_ROWS}) q
    )
    SELECT COUNT(*) FROM taken"""

# The spans in the backlog with their text built on the fly (PostgreSQL's _TAIL).
_PG_TAIL = (
    f"SELECT n.trace_id, tracing_span_search_text(n) AS body FROM {BACKLOG} b "
    "JOIN tracing_span n ON n.trace_id = b.trace_id AND n.id = b.id"
)


def create_backlog(apps: Any, schema_editor: Any) -> None:
    if schema_editor.connection.vendor == "postgresql":
        for statement in PG_BACKLOG_CREATE:
            schema_editor.execute(statement, params=None)


def drop_backlog(apps: Any, schema_editor: Any) -> None:
    if schema_editor.connection.vendor == "postgresql":
        for statement in PG_BACKLOG_DROP:
            schema_editor.execute(statement, params=None)


def create_attrs(apps: Any, schema_editor: Any) -> None:
    sqlite = schema_editor.connection.vendor == "sqlite"
    for statement in SQLITE_ATTRS_CREATE if sqlite else POSTGRES_ATTRS_CREATE:
        schema_editor.execute(statement, params=None)


def drop_attrs(apps: Any, schema_editor: Any) -> None:
    sqlite = schema_editor.connection.vendor == "sqlite"
    for statement in SQLITE_ATTRS_DROP if sqlite else POSTGRES_ATTRS_DROP:
        schema_editor.execute(statement, params=None)


def create_index(apps: Any, schema_editor: Any) -> None:
    statements = SQLITE_CREATE if schema_editor.connection.vendor == "sqlite" else POSTGRES_CREATE
    for statement in statements:
        schema_editor.execute(statement, params=None)


def drop_index(apps: Any, schema_editor: Any) -> None:
    statements = SQLITE_DROP if schema_editor.connection.vendor == "sqlite" else POSTGRES_DROP
    for statement in statements:
        schema_editor.execute(statement, params=None)


# ---------------------------------------------------------------------------------------------
# Full text.


def terms(q: str) -> list[str]:
    """The words of a search, each matched as a substring (all must be in one span). A phrase in
    double quotes is one term."""
    found = [a or b for a, b in re.findall(r'"([^"]+)"|(\S+)', q)]
    unique = list(dict.fromkeys(term for term in found if term.strip()))
    return unique[:MAX_TERMS]


def _like(term: str) -> str:
    escaped = term.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return f"%{escaped}%"


def _vendor(using: str) -> str:
    return connections[using].vendor


def _fts_match(words: Sequence[str]) -> str:
    """An FTS5 query for every word, each a quoted string (trigrams, whatever it holds)."""
    return " AND ".join('"' + w.replace('"', '""') + '"' for w in words)


def _text_condition(
    alias: str, words: Sequence[str], vendor: str, *, scan: bool = False
) -> tuple[str, list[Any]]:
    """Every word is in `alias`'s body (a row of the search table), as index lookups where the
    index can answer; `scan` (PostgreSQL): checked row by row, never through the index (a walk,
    a probe), where a cheaper equivalent of ILIKE may serve (_pg_holds)."""
    if vendor == "sqlite":
        long = [w for w in words if len(w) >= 3]
        short = [w for w in words if len(w) < 3]
        parts, params = [], []
        if long:
            parts.append(f"{TABLE} MATCH %s")
            params.append(_fts_match(long))
        for w in short:
            parts.append(f"{alias}.body LIKE %s ESCAPE '\\'")
            params.append(_like(w))
        return " AND ".join(parts), params
    if scan:
        parts = [_pg_holds(f"{alias}.body", w) for w in words]
    else:
        parts = [f"{alias}.body {_pg_like(w)} %s" for w in words]
    return " AND ".join(parts), [_like(w) for w in words]


def _pg_like(word: str) -> str:
    """ILIKE, or LIKE for a word without cased letters (东京, 4500): the same matches, without
    folding the case of every text it is checked on (several times as fast on long texts)."""
    return "ILIKE" if any(c.lower() != c.upper() for c in word) else "LIKE"


def _pg_holds(text: str, word: str) -> str:
    """SQL for "`text` holds `word`" (one %s: _like(word)), checked on each row, not through the
    trigram index. ILIKE lower()s the whole text first, by the database's collation (libc's
    towlower() per character); under COLLATE "C" it folds ASCII only, about twice as fast over
    a walk's texts, and answers the same for an ASCII word without i or k: the only characters
    whose lower case is ASCII are İ (i) and the Kelvin sign K (k), so they can take part in the
    match of no other ASCII word."""
    operator = _pg_like(word)
    if operator == "ILIKE" and word.isascii() and not {"i", "k"} & set(word.lower()):
        return f'({text}) COLLATE "C" ILIKE %s'
    return f"{text} {operator} %s"


def text_trace_ids(q: str, using: str = "default") -> RawSQL | Collected | None:
    """The trace ids with a span whose text holds every word of `q`: for `trace_id__in`."""
    words = terms(q)
    if not words:
        return None
    vendor = _vendor(using)
    condition, params = _text_condition(TABLE, words, vendor)
    sql = f"SELECT {TABLE}.trace_id FROM {TABLE} WHERE {condition}"
    if vendor == "sqlite":
        # The trace id from the span row, not the index's copy: FTS5 reads a content row whole,
        # body and all, and the span row has it in its first bytes.
        sql = (
            f"SELECT s.trace_id FROM tracing_span s WHERE s.id IN "
            f"(SELECT rowid FROM {TABLE} WHERE {condition})"
        )
        tail = " AND ".join("t.body LIKE %s ESCAPE '\\'" for _ in words)
        sql += f" UNION ALL SELECT t.trace_id FROM ({_TAIL}) t WHERE {tail}"
        params += [_like(w) for w in words]
        return RawSQL(sql, params)
    # The spans in the backlog, their text built on the fly.
    tail = " AND ".join(_pg_holds("t.body", w) for w in words)
    sql += f" UNION ALL SELECT t.trace_id FROM ({_PG_TAIL}) t WHERE {tail}"
    params += [_like(w) for w in words]
    return _pg_collected(sql, params, using)


@dataclass(frozen=True)
class Collected:
    """Trace ids collected once (PostgreSQL, for a narrow search or clauses): the page's rows
    and its cards read the texts once, not once per query."""

    ids: tuple[str, ...]

    def condition(self, outer: str) -> RawSQL:
        """The trace row `outer` is one of them: one parameter, whatever the count, and a hashed
        `= ANY` whose estimate lets the planner choose between looking a few ids up by key and
        checking many as it walks the page's index (as an IN list of parameters, binding them
        cost more than the query; as a subquery, a lookup per id, sorted after)."""
        sql = f"{outer}.trace_id = ANY(string_to_array(%s, ','))"
        return RawSQL(sql, [",".join(self.ids)], output_field=BooleanField())


def trace_ids_filter(found: RawSQL | Collected, outer: str) -> Q:
    """A filter on the trace rows `outer` for what text_trace_ids or clause_trace_ids found."""
    if isinstance(found, Collected):
        return Q(found.condition(outer))
    return Q(trace_id__in=found)


def _pg_collected(sql: str, params: list[Any], using: str) -> Collected:
    """The trace ids of `sql`, collected now, deduplicated. Left as a subquery, the planner, its
    estimate of how many texts an ILIKE or a clause holds on being rough, walked the traces in
    page order checking each one's texts instead: 0.5 s for a word in 1 % of the traces, 6 s with
    a clause beside it. Only narrow searches and clauses are collected (is_broad, clauses_broad),
    so the list is bounded."""
    with connections[using].cursor() as cursor:
        cursor.execute(f"SELECT DISTINCT c.trace_id FROM ({sql}) c", params)
        return Collected(tuple(trace_id for (trace_id,) in cursor.fetchall()))


# A broad search (a word in many spans) is answered by walking the traces in the page's order
# and checking each one's spans, stopping at the page's end, instead of collecting every match
# first: how broad a search is, is read from the newest spans indexed (SQLite).
PROBE_SPANS = 20_000
BROAD_SPANS = 400  # 2 % of the newest spans


# PostgreSQL has no index that counts matches within a range of spans: it reads the rows of the
# first PG_PROBE_SPANS spans of the newest traces (the traces a walk checks first, through the
# trace index and the tables' (trace_id, ...) keys: no scan of a whole table) and calls the search
# broad when PG_BROAD_SPANS of them match (the same 2 %; a broad search stops reading early, a
# narrow one reads them all, a few milliseconds).
PG_PROBE_SPANS = 1000
PG_BROAD_SPANS = 20

# A page that counts its cards up to a bound (studio.filters.STATS_BOUND) also walks a word in
# few spans of many traces: in one in MID_TRACES of the traces the probe covers, and in at
# least MID_MIN of them (a smaller sample says little). Its walk then checks about
# STATS_BOUND * MID_TRACES traces, 1,000; collecting reads every matching text and card row.
# Measured at 100,000 traces of agent spans with messages (benchmarks/bench_search.py): a word
# in one trace in twenty ("error") costs about the same either way; in one in seven
# (bench_overview's Friday-3), collecting took four times as long.
MID_TRACES = 10
MID_MIN = 5


def _pg_newest(table: str, columns: str) -> str:
    """`columns` of the rows of `table` (keyed by trace_id first) of the newest traces, at most
    PG_PROBE_SPANS spans' worth: a nested loop down the trace index, stopping early (OFFSET 0
    keeps the planner from making it a hash join over the whole table)."""
    return (
        f"SELECT found.* FROM (SELECT trace_id FROM tracing_trace ORDER BY start_ns DESC "
        f"LIMIT %s) newest CROSS JOIN LATERAL (SELECT {columns} FROM {table} "
        f"WHERE {table}.trace_id = newest.trace_id OFFSET 0) found LIMIT %s"
    )


def is_broad(q: str, using: str = "default", *, walk_mid: bool = False) -> bool:
    """True if walking the traces finds a page of matches sooner than collecting every match
    would: on SQLite, a search of short terms only (a scan either way), or one whose index terms
    match at least BROAD_SPANS of the newest PROBE_SPANS spans indexed (one bounded index read);
    on PostgreSQL, likewise short terms only, or one that PG_BROAD_SPANS of the newest
    PG_PROBE_SPANS spans' texts hold. With `walk_mid`, for a page whose cards stop at a bound
    (not the API's exact count), also a word in few spans of many traces: in at least one in
    MID_TRACES of the traces the probe covers (and MID_MIN of them)."""
    words = terms(q)
    if not words or conventions_trace_id(q):
        return False
    sqlite = _vendor(using) == "sqlite"
    if sqlite and any(_folds_beyond_ascii(w) for w in words):
        return False
    long = [w for w in words if len(w) >= 3]
    if not long:
        return True  # no trigram to look up: collecting would read every text
    if not sqlite:
        condition, params = _text_condition("f", words, "postgresql", scan=True)
        with connections[using].cursor() as cursor:
            if not walk_mid:
                cursor.execute(
                    f"SELECT COUNT(*) FROM (SELECT 1 FROM ({_pg_newest(TABLE, 'body')}) f "
                    f"WHERE {condition} LIMIT %s) matches",
                    [PG_PROBE_SPANS, PG_PROBE_SPANS, *params, PG_BROAD_SPANS],
                )
                return cursor.fetchone()[0] >= PG_BROAD_SPANS
            # The same read, stopping as early, with the traces of its matches, and how many
            # traces it covers (their ids only: the key's index, not the texts).
            covered = _pg_newest(TABLE, f"{TABLE}.trace_id")
            newest = _pg_newest(TABLE, f"{TABLE}.trace_id, body")
            cursor.execute(
                f"SELECT COUNT(*), COUNT(DISTINCT trace_id), (SELECT COUNT(DISTINCT trace_id) "
                f"FROM ({covered}) c) FROM (SELECT f.trace_id FROM ({newest}) f "
                f"WHERE {condition} LIMIT %s) matches",
                [PG_PROBE_SPANS] * 4 + [*params, PG_BROAD_SPANS],
            )
            spans, traces, probed = cursor.fetchone()
            # Stopping at PG_BROAD_SPANS matches hides nothing: that many walk anyway.
            return spans >= PG_BROAD_SPANS or _holds_in_many_traces(traces, probed)
    match = _fts_match(long)
    with connections[using].cursor() as cursor:
        if not walk_mid:
            cursor.execute(
                f"SELECT COUNT(*) FROM (SELECT rowid FROM {TABLE} WHERE {TABLE} MATCH %s "
                f"AND rowid > (SELECT last_id FROM {STATE}) - %s LIMIT %s)",
                [match, PROBE_SPANS, BROAD_SPANS],
            )
            return cursor.fetchone()[0] >= BROAD_SPANS
        # The matching spans' traces through the span rows (their first bytes; the index's
        # copy of the trace id would read each text whole), and how many traces the window
        # covers, estimated from the ids (neither table's rowids are reused): spans per trace.
        cursor.execute(
            f"SELECT COUNT(*), COUNT(DISTINCT s.trace_id), (SELECT last_id FROM {STATE}), "
            f"(SELECT MAX(rowid) FROM tracing_trace) FROM tracing_span s WHERE s.id IN "
            f"(SELECT rowid FROM {TABLE} WHERE {TABLE} MATCH %s "
            f"AND rowid > (SELECT last_id FROM {STATE}) - %s LIMIT %s)",
            [match, PROBE_SPANS, BROAD_SPANS],
        )
        spans, traces, last_id, all_traces = cursor.fetchone()
        if spans >= BROAD_SPANS:
            return True
        probed = (all_traces or 0) * min(PROBE_SPANS, last_id) / last_id if last_id else 0
        return _holds_in_many_traces(traces, probed)


def _holds_in_many_traces(traces: int, probed: float) -> bool:
    """A word in `traces` of the `probed` newest traces is walked by a page that counts its
    cards up to a bound: it finds them sooner than collecting its many traces would (a word in
    one span of one trace in seven: 14,000 traces collected, 165 to 200 ms, against about 700
    walked)."""
    return traces >= MID_MIN and traces * MID_TRACES >= probed


def _folds_beyond_ascii(word: str) -> bool:
    """True if `word` has a cased letter outside ASCII (É, Ж): the index folds its case, LIKE
    does not."""
    return any(ord(c) > 127 and c.lower() != c.upper() for c in word)


def conventions_trace_id(q: str) -> bool:
    """A 32-hex search means that trace: no walk."""
    return bool(re.fullmatch(r"[0-9a-fA-F]{32}", q.strip()))


def text_exists(q: str, outer: str, using: str = "default") -> RawSQL | None:
    """A condition on the trace row `outer`.trace_id: one of its spans holds every word of `q`.
    Evaluated per trace, so a query ordered by an index with a LIMIT stops at the page's end
    (SQLite: the indexed spans through the index, by rowid, and the ones not indexed yet with
    their text built on the fly)."""
    words = terms(q)
    if not words:
        return None
    if _vendor(using) != "sqlite":
        # The trace's rows of the search table through its trace_id index. A scalar subquery,
        # not EXISTS: the planner would turn EXISTS into a join and, misjudging how many texts
        # an ILIKE holds on, read every text first; this it evaluates per trace, in page order.
        condition, params = _text_condition("f", words, "postgresql", scan=True)
        # Then the trace's spans in the backlog, their text built on the fly.
        tail = " AND ".join(_pg_holds("tracing_span_search_text(n)", w) for w in words)
        sql = (
            f"COALESCE((SELECT TRUE FROM {TABLE} f WHERE f.trace_id = {outer}.trace_id "
            f"AND {condition} LIMIT 1), (SELECT TRUE FROM {BACKLOG} b JOIN tracing_span n "
            f"ON n.trace_id = b.trace_id AND n.id = b.id WHERE b.trace_id = {outer}.trace_id "
            f"AND {tail} LIMIT 1), FALSE)"
        )
        params += [_like(w) for w in words]
        return RawSQL(sql, params, output_field=BooleanField())
    # LIKE on the indexed text, read by rowid (a MATCH correlated with each span would read the
    # whole posting list every time): it folds the case of ASCII only, which is why is_broad()
    # leaves words with other cased letters to the index. The text is read from the FTS5
    # table's own content table (CONTENT: column c1 is `body`), a plain rowid table: through
    # the virtual table the same read cost a third more CPU over a walk.
    like = " AND ".join("f.c1 LIKE %s ESCAPE '\\'" for _ in words)
    tail = " AND ".join("t.body LIKE %s ESCAPE '\\'" for _ in words)
    sql = (
        f"(EXISTS (SELECT 1 FROM tracing_span s JOIN {CONTENT} f ON f.id = s.id "
        f"WHERE s.trace_id = {outer}.trace_id AND {like}) OR EXISTS (SELECT 1 FROM "
        f"(SELECT {_sqlite_text('s')} AS body FROM tracing_span s "
        f"WHERE s.trace_id = {outer}.trace_id AND s.id > (SELECT last_id FROM {STATE})) t "
        f"WHERE {tail}))"
    )
    params = [_like(w) for w in words] * 2
    return RawSQL(sql, params, output_field=BooleanField())


# ---------------------------------------------------------------------------------------------
# Attribute clauses: the search text narrows the spans (every clause's key is in it as `key=`),
# then each candidate's JSON is checked, typed.


def _literal(key: str) -> str:
    """A key as an SQL string literal: the clause parser lets no quote or backslash into a key,
    and this checks it again, so keys can be inlined (json paths cannot be parameters in every
    position both databases need)."""
    if not _SAFE_KEY.fullmatch(key):
        raise ValueError(f"unsafe attribute key {key!r}")
    return key


_SAFE_KEY = re.compile(r"[A-Za-z0-9_.\-/:@]+")


# SQLite: the spans the indexer has not reached yet, with their text built on the fly.
_TAIL = (
    f"SELECT s.trace_id, {_sqlite_text('s')} AS body FROM tracing_span s "
    f"WHERE s.id > (SELECT last_id FROM {STATE})"
)


def _json_path(key: str) -> str:
    return '$."' + _literal(key) + '"'


def _clause_sql(clause: Clause, vendor: str) -> tuple[str, list[Any]]:
    """A condition on one span row `s`: on its attribute `key`, else its resource's."""
    key = _literal(clause.key)
    if vendor == "sqlite":
        span_path, resource_path = f"'$.\"{key}\"'", f"'$.attributes.\"{key}\"'"
        type_ = (
            f"COALESCE(json_type(s.attributes_json, {span_path}), "
            f"json_type(s.resource_json, {resource_path}))"
        )
        value = (
            f"(CASE WHEN json_type(s.attributes_json, {span_path}) IS NOT NULL "
            f"THEN json_extract(s.attributes_json, {span_path}) "
            f"ELSE json_extract(s.resource_json, {resource_path}) END)"
        )
        as_text = f"CAST({value} AS TEXT)"
        as_number = f"(CASE WHEN {type_} IN ('integer', 'real') THEN {value} END)"
        string = f"(CASE WHEN {type_} = 'text' THEN {value} END)"
        boolean = f"{type_}"
        like = "LIKE"
    else:
        raw = (
            f"COALESCE(tracing_jsonb(s.attributes_json, '{{}}') -> '{key}', "
            f"tracing_jsonb(s.resource_json, '{{}}') -> 'attributes' -> '{key}')"
        )
        type_ = f"jsonb_typeof({raw})"
        as_text = f"({raw} #>> '{{}}')"
        # CASE, not AND: PostgreSQL may cast before it checks the type.
        as_number = f"(CASE WHEN {type_} = 'number' THEN ({raw} #>> '{{}}')::float8 END)"
        string = f"(CASE WHEN {type_} = 'string' THEN {raw} #>> '{{}}' END)"
        boolean = f"(CASE WHEN {type_} = 'boolean' THEN {raw} #>> '{{}}' END)"
        like = "ILIKE"
    op = clause.op
    if op == "exists":
        return f"{type_} IS NOT NULL", []
    if op == "~":
        return f"{as_text} {like} %s ESCAPE '\\'", [_like(clause.text)]
    if isinstance(clause.value, bool):
        condition, params = f"{boolean} = %s", ["true" if clause.value else "false"]
    elif isinstance(clause.value, float):
        if op in ("=", "!="):
            # A number equals a stored number, or a stored text that reads the same.
            condition = f"({as_number} = %s OR {string} = %s)"
            params = [clause.value, clause.text]
        else:
            return f"{as_number} {op} %s", [clause.value]
    else:
        condition, params = f"{string} = %s", [clause.value]
    if op == "!=":
        return f"({type_} IS NOT NULL AND NOT COALESCE({condition}, FALSE))", params
    return condition, params


def _clause_terms(clause: Clause) -> list[str]:
    """Substrings every span matching `clause` has in its search text (from the start of a
    value, which is never cut)."""
    # The value alone when it can be looked up: keys share their trigrams with every span
    # (gen_ai.…), so a key narrows far less than a value does.
    if clause.op == "=" and isinstance(clause.value, str) and len(clause.value.strip()) >= 3:
        return [clause.value.strip()]
    return [f"{clause.key}="]


def span_condition(clauses: Sequence[Clause], vendor: str) -> tuple[str, list[Any]]:
    """One span `s` matches every clause."""
    parts, params = [], []
    for clause in clauses:
        sql, clause_params = _clause_sql(clause, vendor)
        parts.append(sql)
        params.extend(clause_params)
    return " AND ".join(parts) or "1 = 1", params


def _attr_condition(clause: Clause, a: str) -> tuple[str, list[Any]] | None:
    """`clause` as a condition on the attribute row `a` (of the same key), or None when the
    attribute table cannot answer it (contains, and texts longer than it holds)."""
    op, value = clause.op, clause.value
    if op == "exists":
        return "1 = 1", []
    if op == "~" or (isinstance(value, str) and len(value) > SHORT):
        return None
    if op in ORDERED:
        # Numbers have no `str`: the IS NULL keeps the (key, str, num) index usable for a range.
        return f"{a}.str IS NULL AND {a}.t = 'n' AND {a}.num {op} %s", [value]
    if isinstance(value, bool):
        condition, params = f"{a}.str = %s AND {a}.t = 'b'", [clause.text]
    elif isinstance(value, float):
        # A number equals a stored number, or a stored text that reads the same.
        condition = (
            f"(({a}.str IS NULL AND {a}.t = 'n' AND {a}.num = %s) "
            f"OR ({a}.str = %s AND {a}.t = 's'))"
        )
        params = [value, clause.text]
    else:
        condition, params = f"{a}.str = %s AND {a}.t = 's'", [value]
    if op == "!=":
        return f"NOT ({condition})", params
    return condition, params


# The most selective first: it drives the query, the others are checked on its spans.
_RANK = {"=": 0, ">": 1, ">=": 1, "<": 1, "<=": 1, "exists": 2, "!=": 3}


def _split(clauses: Sequence[Clause]) -> tuple[str, list[Any], list[Clause]]:
    """The conditions the attribute table answers, on its row `a0` (the most selective clause)
    and on the same span's other rows, and the clauses it cannot answer."""
    parts: list[str] = []
    params: list[Any] = []
    rest: list[Clause] = []
    for clause in sorted(clauses, key=lambda c: _RANK.get(c.op, 9)):
        n = len(parts)
        condition = _attr_condition(clause, f"a{n}")
        if condition is None:
            rest.append(clause)
            continue
        sql, condition_params = condition
        if n == 0:
            parts.append(f"a0.key = %s AND {sql}")
        else:
            parts.append(
                f"EXISTS (SELECT 1 FROM {ATTRS} a{n} WHERE a{n}.trace_id = a0.trace_id "
                f"AND a{n}.span = a0.span "
                f"AND a{n}.key = %s AND {sql})"
            )
        params += [clause.key, *condition_params]
    return " AND ".join(parts), params, rest


def clause_trace_ids(
    clauses: Sequence[Clause], using: str = "default"
) -> RawSQL | Collected | None:
    """The trace ids with a span matching every clause: for `trace_id__in`. The attribute table
    answers what it can (one index range, then a primary key probe per other clause); what it
    cannot (`~`, long texts) is checked on the span's JSON; with no clause it can answer, the
    search text narrows the spans instead."""
    if not clauses:
        return None
    vendor = _vendor(using)
    indexed, params, rest = _split(clauses)
    span_sql, span_params = span_condition(clauses, vendor)
    if indexed:
        sql = f"SELECT a0.trace_id FROM {ATTRS} a0"
        if rest:
            rest_sql, rest_params = span_condition(rest, vendor)
            sql += " JOIN tracing_span s ON s.trace_id = a0.trace_id AND s.id = a0.span"
            indexed += f" AND {rest_sql}"
            params += rest_params
        sql += f" WHERE {indexed}"
    else:
        narrow = [term for clause in clauses for term in _clause_terms(clause)]
        text_sql, text_params = _text_condition(TABLE, narrow, vendor)
        if vendor == "sqlite":
            join = f"JOIN tracing_span s ON s.id = {TABLE}.rowid"
        else:
            join = f"JOIN tracing_span s ON s.trace_id = {TABLE}.trace_id AND s.id = {TABLE}.id"
        sql = f"SELECT s.trace_id FROM {TABLE} {join} WHERE {text_sql} AND {span_sql}"
        params = [*text_params, *span_params]
    if vendor == "sqlite":
        # Spans the indexer has not reached: neither table has them yet.
        sql += (
            f" UNION ALL SELECT s.trace_id FROM tracing_span s "
            f"WHERE s.id > (SELECT last_id FROM {STATE}) AND {span_sql}"
        )
        params += span_params
        return RawSQL(sql, params)
    # Spans in the backlog: neither table has them yet.
    sql += (
        f" UNION ALL SELECT s.trace_id FROM {BACKLOG} b JOIN tracing_span s "
        f"ON s.trace_id = b.trace_id AND s.id = b.id WHERE {span_sql}"
    )
    params += span_params
    return _pg_collected(sql, params, using)


def clauses_broad(clauses: Sequence[Clause], using: str = "default") -> bool:
    """True if the clauses' table part holds on at least BROAD_SPANS of the newest PROBE_SPANS
    spans indexed (SQLite; a bounded read of the table's primary key; PostgreSQL: PG_BROAD_SPANS
    rows of the newest traces' first PG_PROBE_SPANS spans or so, as is_broad), so walking the
    traces finds a page sooner than collecting every match."""
    if not clauses:
        return False
    indexed, params, _ = _split(clauses)
    if not indexed:
        return False
    if _vendor(using) != "sqlite":
        # The newest traces' attribute rows by the table's key (see is_broad).
        newest = _pg_newest(ATTRS, "key, str, num, t, trace_id, span")
        with connections[using].cursor() as cursor:
            cursor.execute(
                f"SELECT COUNT(*) FROM (SELECT 1 FROM ({newest}) a0 WHERE {indexed} LIMIT %s) m",
                [PG_PROBE_SPANS, PG_PROBE_SPANS * 10, *params, PG_BROAD_SPANS],
            )
            return cursor.fetchone()[0] >= PG_BROAD_SPANS
    with connections[using].cursor() as cursor:
        cursor.execute(
            f"SELECT COUNT(*) FROM (SELECT 1 FROM {ATTRS} a0 NOT INDEXED "
            f"WHERE a0.span > (SELECT last_id FROM {STATE}) - %s AND {indexed} LIMIT %s)",
            [PROBE_SPANS, *params, BROAD_SPANS],
        )
        return cursor.fetchone()[0] >= BROAD_SPANS


def clauses_exist(clauses: Sequence[Clause], outer: str, using: str = "default") -> RawSQL:
    """A condition on the trace row `outer`.trace_id: one of its spans matches every clause,
    checked per trace (see text_exists): its spans through span_tree_idx, their rows in the
    attribute table by primary key, the spans not indexed yet on their JSON (SQLite)."""
    vendor = _vendor(using)
    indexed, params, rest = _split(clauses)
    span_sql, span_params = span_condition(clauses, vendor)
    if rest:
        rest_sql, rest_params = span_condition(rest, vendor)
        indexed += f" AND {rest_sql}"
        params += rest_params
    if vendor != "sqlite":
        # The trace's rows by the table's key (trace_id, span, key); a scalar subquery for the
        # reason text_exists gives. Then the trace's spans in the backlog, on their JSON.
        join = ""
        if rest:
            join = "JOIN tracing_span s ON s.trace_id = a0.trace_id AND s.id = a0.span "
        sql = (
            f"COALESCE((SELECT TRUE FROM {ATTRS} a0 {join}"
            f"WHERE a0.trace_id = {outer}.trace_id AND {indexed} LIMIT 1), "
            f"(SELECT TRUE FROM {BACKLOG} b JOIN tracing_span s "
            f"ON s.trace_id = b.trace_id AND s.id = b.id "
            f"WHERE b.trace_id = {outer}.trace_id AND {span_sql} LIMIT 1), FALSE)"
        )
        return RawSQL(sql, [*params, *span_params], output_field=BooleanField())
    sql = (
        # CROSS JOIN and NOT INDEXED keep SQLite on this trace's spans, then their rows by
        # primary key, instead of the key's whole range for every trace.
        f"(EXISTS (SELECT 1 FROM tracing_span s CROSS JOIN {ATTRS} a0 NOT INDEXED "
        f"ON a0.trace_id = s.trace_id AND a0.span = s.id "
        f"WHERE s.trace_id = {outer}.trace_id AND {indexed}) OR EXISTS (SELECT 1 FROM "
        f"tracing_span s WHERE s.trace_id = {outer}.trace_id "
        f"AND s.id > (SELECT last_id FROM {STATE}) AND {span_sql}))"
    )
    return RawSQL(sql, [*params, *span_params], output_field=BooleanField())


# ---------------------------------------------------------------------------------------------
# Snippets for the overview's rows, and the span finder of one trace.


@dataclass(frozen=True)
class Snippet:
    span_id: str
    # The text around the first match, cut into (text, is_match) parts; the template escapes them.
    parts: tuple[tuple[str, bool], ...]


def _rows_matching(
    trace_ids: Iterable[str], words: Sequence[str], using: str
) -> list[tuple[str, str, str]]:
    """(trace id, span id, text) of the spans of these traces whose text holds every word,
    by start."""
    trace_ids = list(trace_ids)
    if not trace_ids or not words:
        return []
    vendor = _vendor(using)
    placeholders = ", ".join(["%s"] * len(trace_ids))
    if vendor == "sqlite":
        condition = " AND ".join("t.body LIKE %s ESCAPE '\\'" for _ in words)
        body = (
            f"CASE WHEN s.id > (SELECT last_id FROM {STATE}) THEN {_sqlite_text('s')} "
            f"ELSE (SELECT f.body FROM {TABLE} f WHERE f.rowid = s.id) END"
        )
        sql = (
            f"SELECT t.trace_id, t.span_id, t.body FROM (SELECT s.trace_id, s.span_id, "
            f"s.start_ns, {body} AS body FROM tracing_span s "
            f"WHERE s.trace_id IN ({placeholders})) t WHERE {condition} "
            f"ORDER BY t.trace_id, t.start_ns, t.span_id"
        )
    else:
        # Each span's search row by its key (trace_id, id), one lookup a span: OFFSET 0 keeps
        # the planner from turning the lateral into a join, which with a stale estimate of the
        # search table's size it ran as a scan of every span's text (4 to 9 s a query). A span
        # in the backlog has its text built on the fly instead.
        condition = " AND ".join(_pg_holds("f.body", w) for w in words)
        sql = (
            f"SELECT s.trace_id, s.span_id, f.body FROM tracing_span s "
            f"CROSS JOIN LATERAL (SELECT body FROM {TABLE} "
            f"WHERE trace_id = s.trace_id AND id = s.id UNION ALL "
            f"SELECT tracing_span_search_text(s) FROM {BACKLOG} "
            f"WHERE trace_id = s.trace_id AND id = s.id OFFSET 0) f "
            f"WHERE s.trace_id IN ({placeholders}) AND {condition} "
            f"ORDER BY s.trace_id, s.start_ns, s.span_id"
        )
    with connections[using].cursor() as cursor:
        cursor.execute(sql, [*trace_ids, *(_like(w) for w in words)])
        return list(cursor.fetchall())


def snippet_parts(text: str, words: Sequence[str], width: int = 60) -> tuple[tuple[str, bool], ...]:
    """The text around the first word found, with every word found in it marked."""
    pattern = re.compile("|".join(re.escape(w) for w in sorted(words, key=len, reverse=True)), re.I)
    first = pattern.search(text)
    if first is None:
        return ((text[: 2 * width], False),)
    start = max(0, first.start() - width)
    end = min(len(text), first.end() + width)
    window = " ".join(text[start:end].split())
    prefix = "…" if start > 0 else ""
    suffix = "…" if end < len(text) else ""
    parts: list[tuple[str, bool]] = []
    at = 0
    for match in pattern.finditer(window):
        if match.start() > at:
            parts.append((window[at : match.start()], False))
        parts.append((match.group(), True))
        at = match.end()
    if at < len(window):
        parts.append((window[at:], False))
    if prefix:
        parts.insert(0, (prefix, False))
    if suffix:
        parts.append((suffix, False))
    return tuple(parts)


def snippets(trace_ids: Iterable[str], q: str, using: str = "default") -> dict[str, Snippet]:
    """For each trace, its first span (by start) holding every word of `q`, with the text around
    the match: one query over those traces' spans only."""
    words = terms(q)
    found: dict[str, Snippet] = {}
    for trace_id, span_id, body in _rows_matching(trace_ids, words, using):
        if trace_id not in found:
            found[trace_id] = Snippet(span_id, snippet_parts(body, words))
    return found


def spans_matching(trace_id: str, q: str, using: str = "default") -> set[str]:
    """The ids of the spans of one trace whose search text holds every word of `q`."""
    return {span_id for _, span_id, _ in _rows_matching([trace_id], terms(q), using)}


# ---------------------------------------------------------------------------------------------
# Suggestions for the attribute filter: from the newest spans only, so each is a bounded read.

SAMPLE_SPANS = 2000
MAX_SUGGESTIONS = 50


def attribute_keys(prefix: str = "", using: str = "default") -> list[str]:
    vendor = _vendor(using)
    if vendor == "sqlite":
        sql = (
            "SELECT DISTINCT k FROM (SELECT a.key AS k FROM (SELECT attributes_json, resource_json "
            f"FROM tracing_span ORDER BY id DESC LIMIT {SAMPLE_SPANS}) s, "
            "json_each(s.attributes_json) a UNION SELECT r.key FROM (SELECT resource_json FROM "
            f"tracing_span ORDER BY id DESC LIMIT {SAMPLE_SPANS}) s2, "
            "json_each(s2.resource_json, '$.attributes') r) "
            f"WHERE k LIKE %s ESCAPE '\\' ORDER BY k LIMIT {MAX_SUGGESTIONS}"
        )
    else:
        sql = (
            "SELECT DISTINCT k FROM (SELECT "
            "jsonb_object_keys(tracing_jsonb(attributes_json, '{}')) AS k FROM "
            f"(SELECT attributes_json FROM tracing_span ORDER BY id DESC LIMIT {SAMPLE_SPANS}) s "
            "UNION SELECT jsonb_object_keys(coalesce(tracing_jsonb(resource_json, '{}') "
            "-> 'attributes', "
            f"'{{}}')) FROM (SELECT resource_json FROM tracing_span ORDER BY id DESC "
            f"LIMIT {SAMPLE_SPANS}) s2) keys "
            f"WHERE k LIKE %s ESCAPE '\\' ORDER BY k LIMIT {MAX_SUGGESTIONS}"
        )
    escaped = prefix.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    with connections[using].cursor() as cursor:
        cursor.execute(sql, [escaped + "%"])
        return [key for (key,) in cursor.fetchall()]


def attribute_values(key: str, prefix: str = "", using: str = "default") -> list[str]:
    """Short scalar values of `key` on the newest spans (values of 100 characters or more are
    messages and documents, not filter values)."""
    vendor = _vendor(using)
    if vendor == "sqlite":
        path = _json_path(key)
        value = "COALESCE(json_extract(attributes_json, %s), json_extract(resource_json, %s))"
        params: list[Any] = [path, '$.attributes."' + key + '"']
        sql = (
            f"SELECT DISTINCT CAST(v AS TEXT) FROM (SELECT {value} AS v FROM tracing_span "
            f"ORDER BY id DESC LIMIT {SAMPLE_SPANS}) "
            "WHERE v IS NOT NULL AND length(CAST(v AS TEXT)) < 100 "
            f"AND CAST(v AS TEXT) LIKE %s ESCAPE '\\' ORDER BY 1 LIMIT {MAX_SUGGESTIONS}"
        )
    else:
        value = (
            "COALESCE(tracing_jsonb(attributes_json, '{}') -> %s, "
            "tracing_jsonb(resource_json, '{}') -> 'attributes' -> %s)"
        )
        params = [key, key]
        sql = (
            f"SELECT DISTINCT v FROM (SELECT ({value}) #>> '{{}}' AS v FROM tracing_span "
            f"ORDER BY id DESC LIMIT {SAMPLE_SPANS}) vals "
            "WHERE v IS NOT NULL AND length(v) < 100 "
            f"AND v LIKE %s ESCAPE '\\' ORDER BY 1 LIMIT {MAX_SUGGESTIONS}"
        )
    escaped = prefix.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    with connections[using].cursor() as cursor:
        cursor.execute(sql, [*params, escaped + "%"])
        return [str(v) for (v,) in cursor.fetchall()]


# ---------------------------------------------------------------------------------------------
# Indexing after the commit.

INDEX_CHUNK = 500
# Seconds paused per second spent indexing.
INDEX_PAUSE = 1.0


def index_pending(limit: int = INDEX_CHUNK, using: str = "default") -> int:
    """Index the next `limit` spans not indexed yet, in one short transaction (the writer's
    commits wait at most that long); returns how many. Spans are indexed in id order, and SQLite
    commits one writer at a time, so every span up to the recorded last id is in the index.
    PostgreSQL: the backlog's, each span once however many indexers run."""
    connection = connections[using]
    if connection.vendor != "sqlite":
        # PostgreSQL: the oldest `limit` spans of the backlog no other indexer holds.
        with transaction.atomic(using=using), connection.cursor() as cursor:
            cursor.execute(_PG_INDEX_CHUNK, [limit])
            return int(cursor.fetchone()[0])
    with transaction.atomic(using=using), connection.cursor() as cursor:
        cursor.execute(f"SELECT last_id FROM {STATE}")
        (last,) = cursor.fetchone()
        cursor.execute(
            "SELECT MAX(id), COUNT(*) FROM (SELECT id FROM tracing_span WHERE id > %s "
            "ORDER BY id LIMIT %s)",
            [last, limit],
        )
        upto, count = cursor.fetchone()
        if not count:
            return 0
        cursor.execute(
            f"INSERT INTO {TABLE} (rowid, trace_id, body) SELECT s.id, s.trace_id, "
            f"{_sqlite_text('s')} FROM tracing_span s WHERE s.id > %s AND s.id <= %s",
            [last, upto],
        )
        for statement in sqlite_fill_attrs("s.id > %s AND s.id <= %s"):
            cursor.execute(statement, [last, upto])
        cursor.execute(f"UPDATE {STATE} SET last_id = %s", [upto])
    return int(count)


class Indexer:
    """One thread per serving process that runs index_pending() until nothing is left, each
    time the writer commits (started by runstudio; a process that only reads never indexes)."""

    def __init__(self) -> None:
        self._wake = threading.Event()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()

    def start(self, *args: Any, **kwargs: Any) -> None:
        with self._lock:
            if self._thread is None:
                self._thread = threading.Thread(
                    target=self._run, name="search-indexer", daemon=True
                )
                self._thread.start()
        self._wake.set()  # spans stored while no process was serving

    def wake(self, *args: Any, **kwargs: Any) -> None:
        """The traces_changed receiver: quick, and never raises."""
        self._wake.set()

    def _run(self) -> None:
        # Background work, like ingest's: the CPU goes to the pages first (on Linux niceness is
        # per thread).
        with contextlib.suppress(OSError, AttributeError):
            niceness = settings.STUDIO_INGEST_NICENESS
            if niceness > 0:
                os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), niceness)
        while True:
            self._wake.wait()
            self._wake.clear()
            try:
                while True:
                    started = time.monotonic()
                    if not index_pending():
                        break
                    # SQLite has one write lock: between chunks the writer gets it for as long
                    # as the chunk held it, so ingest keeps most of its pace while the index
                    # catches up (searches read what it has not reached on the fly). On
                    # PostgreSQL the pause leaves the writer the database's CPU in the same way.
                    time.sleep((time.monotonic() - started) * INDEX_PAUSE)
            except Exception:
                # Searches still see unindexed spans (built on the fly); the next commit retries.
                logger.exception("indexing spans for search failed")
            try:
                # The same thread folds the cards' totals that PostgreSQL's writers appended.
                from tracing import totals  # tracing.models imports this module

                totals.compact()
            except Exception:
                logger.exception("folding the overview's totals failed")
            # Outside the try above, a failure here would end the thread, and no span would be
            # indexed again until a restart.
            try:
                close_old_connections()
            except Exception:
                logger.exception("closing the search indexer's connection failed")


indexer = Indexer()
