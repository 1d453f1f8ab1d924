"""The row contract: tables, columns, their types in each store, the schema version and its migrations.

This module is the single source of truth that docs/records.md describes. Every store builds its
tables from it (SQLite and PostgreSQL DDL), the JSON-lines and InfluxDB writers take their field
lists from it, and `load()` / the report read it back with these names and types.

Versioning: the schema has one integer version, kept in each SQL database in the table
`gateway_stats_schema` (one row: `version`). A writer applies, in order and inside one locked
transaction, every migration above the stored version (several processes may open the same database
at once; the lock makes exactly one of them migrate). Migrations are forward only and additive: new
tables, new nullable columns, new indexes; a column is never renamed, retyped or dropped. So a reader
or an older writer keeps working on a newer database (it simply does not see the new columns); an
older writer that finds a newer version logs it once and keeps writing the columns it knows.
"""

from __future__ import annotations

from dataclasses import dataclass, field

SCHEMA_VERSION = 2
VERSION_TABLE = "gateway_stats_schema"

# Logical types, mapped per store below. `decimal` is exact: NUMERIC in PostgreSQL, TEXT in SQLite
# (SQLite's NUMERIC affinity would turn 0.1 into a binary float).
SQLITE_TYPES = {
    "text": "TEXT",
    "int": "INTEGER",
    "bool": "INTEGER",  # 0 / 1
    "timestamp": "TEXT",  # ISO 8601 UTC with milliseconds and Z: 2026-12-02T04:20:51.123Z
    "decimal": "TEXT",  # the exact decimal as written, e.g. 0.000123
    "json": "TEXT",
}
POSTGRES_TYPES = {
    "text": "TEXT",
    "int": "BIGINT",
    "bool": "BOOLEAN",
    "timestamp": "TIMESTAMPTZ",
    "decimal": "NUMERIC",
    "json": "JSONB",
}


@dataclass(frozen=True, slots=True)
class Column:
    name: str
    type: str  # a key of SQLITE_TYPES / POSTGRES_TYPES
    meaning: str
    not_null: bool = False


@dataclass(frozen=True, slots=True)
class Table:
    """One row kind's table. `kind` is the name rows are queued under (`call`, `feedback`, ...)."""

    name: str
    kind: str
    columns: tuple[Column, ...]
    indexes: tuple[tuple[str, tuple[str, ...]], ...] = ()  # (index name, columns)
    time_column: str = "ts"
    since_version: int = 1  # the schema version whose migration creates it
    names: tuple[str, ...] = field(init=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "names", tuple(c.name for c in self.columns))

    def column(self, name: str) -> Column:
        for c in self.columns:
            if c.name == name:
                return c
        raise KeyError(name)


def _c(name: str, type_: str, meaning: str, not_null: bool = False) -> Column:
    return Column(name, type_, meaning, not_null)


CALLS = Table(
    name="calls",
    kind="call",
    columns=(
        _c("ts", "timestamp", "when the call started (request headers reached the sidecar), UTC", True),
        _c("request_id", "text", "Envoy's request id (x-request-id); joins the access log", True),
        _c("route", "text", "Envoy route name (xds.route_name)"),
        _c("cluster", "text", "Envoy upstream cluster (xds.cluster_name)"),
        _c("virtual_host", "text", "Envoy virtual host (xds.virtual_host_name)"),
        _c(
            "provider",
            "text",
            "API provider, semconv gen_ai.provider.name: openai, anthropic, gcp.gemini, ...",
        ),
        _c("operation", "text", "semconv gen_ai.operation.name: chat, text_completion, embeddings, ..."),
        _c("request_model", "text", "model the client asked for"),
        _c("response_model", "text", "model the upstream says answered"),
        _c("stream", "bool", "the answer was streamed (SSE)", True),
        _c("status_code", "int", "HTTP status of the upstream answer; null if none came"),
        _c("outcome", "text", "ok | error | aborted (the stream ended before the answer did)", True),
        _c("error_type", "text", "semconv error.type: provider error type, or the status code"),
        _c("input_tokens", "int", "input tokens as the provider counts them (cache reads included)"),
        _c("output_tokens", "int", "output tokens"),
        _c("total_tokens", "int", "total tokens as reported (else input + output)"),
        _c("cached_tokens", "int", "input tokens read from the provider's prompt cache"),
        _c("cache_write_tokens", "int", "input tokens written to the prompt cache (Anthropic)"),
        _c("reasoning_tokens", "int", "reasoning / thinking tokens"),
        _c("cost", "decimal", "money cost of the call, exact; null when not priced"),
        _c("currency", "text", "currency of cost (ISO 4217, e.g. USD)"),
        _c("duration_ms", "int", "request start to end of the response, ms (Higress llm_service_duration)"),
        _c("first_byte_ms", "int", "request start to first response byte, ms (llm_first_token_duration)"),
        _c("first_content_ms", "int", "request start to first generated content, ms"),
        _c("consumer", "text", "the consumer (x-mse-consumer or the configured header; 'none' if absent)"),
        _c("session_id", "text", "conversation / session id (session_id_header or the known headers)"),
        _c("response_id", "text", "the answer's id: chatcmpl-…, msg_…, resp_… (DIAL response_id)"),
        _c("user_hash", "text", "keyed HMAC-SHA256 of the end-user id; never the raw id"),
        _c("trace_id", "text", "W3C trace id (32 hex) of the call's trace"),
        _c("span_id", "text", "our GenAI span when tracing is on, else the W3C parent span (16 hex)"),
        _c("request_messages", "int", "messages in the request (chat history), or embedding inputs"),
        _c("language", "text", "detected language of the last user text (ISO 639-1); null if unsure"),
        _c("topic", "text", "topic of the request (configured rules or classifier)"),
        _c("attributes", "json", "every configured attribute's value (logged or not), a JSON object"),
    ),
    indexes=(
        ("calls_ts", ("ts",)),
        ("calls_model_ts", ("response_model", "ts")),
        ("calls_consumer_ts", ("consumer", "ts")),
        ("calls_request_id", ("request_id",)),
    ),
)

FEEDBACK = Table(
    name="feedback",
    kind="feedback",
    columns=(
        _c("ts", "timestamp", "when the feedback arrived, UTC", True),
        _c(
            "source",
            "text",
            "`dial_rate` (DIAL's rate call crossing Envoy) or `api` (POST /v1/feedback)",
            True,
        ),
        _c("response_id", "text", "the rated call's answer id (DIAL responseId); joins calls.response_id"),
        _c("request_id", "text", "the rated call's request id; joins calls.request_id"),
        _c("external_reference_id", "text", "Athina's reference id of the rated call"),
        _c("rating", "int", "1 like, -1 dislike, null for a comment or grade only"),
        _c("like_count", "int", "1 for a like, else 0 (DIAL rate_analytics)", True),
        _c("dislike_count", "int", "1 for a dislike, else 0 (DIAL rate_analytics)", True),
        _c("comment", "text", "Athina user_feedback_comment"),
        _c("grader_feedback", "int", "Athina grader_feedback: 1 or -1"),
        _c("deployment", "text", "DIAL: the deployment named in the rate path"),
        _c("model", "text", "the rated call's model (else the DIAL deployment)"),
        _c("route", "text", "the rated call's Envoy route"),
        _c("consumer", "text", "the rated call's consumer"),
        _c("user_hash", "text", "keyed HMAC-SHA256 of the rating user's id"),
        _c("session_id", "text", "the conversation (DIAL chat_id)"),
        _c("joined", "bool", "the rated call was found when the feedback arrived (recent calls)", True),
        _c("via_request_id", "text", "the DIAL rate call's own request id"),
    ),
    indexes=(
        ("feedback_ts", ("ts",)),
        ("feedback_response_id", ("response_id",)),
        ("feedback_request_id", ("request_id",)),
    ),
    since_version=2,
)

# Every table, by row kind.
TABLES: dict[str, Table] = {CALLS.kind: CALLS, FEEDBACK.kind: FEEDBACK}


def table_for(kind: str) -> Table:
    try:
        return TABLES[kind]
    except KeyError:
        raise KeyError(f"unknown row kind {kind!r} (known: {', '.join(TABLES)})") from None


# ------------------------------------------------------------------------------------------ DDL


def _create_table(t: Table, types: dict[str, str]) -> str:
    cols = ",\n  ".join(f"{c.name} {types[c.type]}{' NOT NULL' if c.not_null else ''}" for c in t.columns)
    return f"CREATE TABLE IF NOT EXISTS {t.name} (\n  {cols}\n)"


def _create_indexes(t: Table) -> list[str]:
    return [f"CREATE INDEX IF NOT EXISTS {name} ON {t.name} ({', '.join(cols)})" for name, cols in t.indexes]


def _table_ddl(t: Table, dialect: str) -> list[str]:
    types = SQLITE_TYPES if dialect == "sqlite" else POSTGRES_TYPES
    return [_create_table(t, types), *_create_indexes(t)]


@dataclass(frozen=True, slots=True)
class Migration:
    version: int
    description: str
    sqlite: tuple[str, ...]
    postgres: tuple[str, ...]

    def statements(self, dialect: str) -> tuple[str, ...]:
        return self.sqlite if dialect == "sqlite" else self.postgres


# Forward migrations, in order: migration N takes a database from version N-1 to N.
MIGRATIONS: tuple[Migration, ...] = (
    Migration(
        1,
        "the calls table and its indexes (time, model, consumer, request id)",
        tuple(_table_ddl(CALLS, "sqlite")),
        tuple(_table_ddl(CALLS, "postgres")),
    ),
    Migration(
        2,
        "the feedback table (likes, dislikes, comments, grades), indexes on time, response id, request id",
        tuple(_table_ddl(FEEDBACK, "sqlite")),
        tuple(_table_ddl(FEEDBACK, "postgres")),
    ),
)


def pending(current: int) -> list[Migration]:
    """The migrations a database at version `current` still needs, in order."""
    return [m for m in MIGRATIONS if m.version > current]
