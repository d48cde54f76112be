"""text search: one searchable document per record, kept by the database itself, with a trigram index

The web application's 受付一覧 searches comment text, 要旨, 該当箇所, the submitter's name and organisation and
the subject with an AND of words, on 100,000 records in well under a second. Scanning the JSON of every
record cannot do that, so each record gets one document (`record_search`), written by triggers on `messages`
in the same transaction as the record (every writer: the pipeline, release, retry, rescan), and indexed:

- PostgreSQL: a table with a GIN `gin_trgm_ops` index (extension pg_trgm, trusted since PostgreSQL 13: the
  database owner may create it); the document is NFKC-normalised and lower-cased, so ＡＩ finds AI. The
  trigger never fails the record's transaction: on any error the document falls back to the subject.
- Both: `record_facets` (one row per record and facet: `kind:<submitter kind>`, `target:<main|annex>`), kept by
  the same triggers, so the kind and 資料 filters are an index probe, not a parse of every record's JSON
  (PostgreSQL's `json` is text: a path into it parses the whole document, 6 s over 100,000 records); and an
  index on (received_at, id), the log's order, so a deep page is an index walk.
- SQLite: an FTS5 table with the trigram tokenizer (case-insensitive), rowid = the record id.

Careful: an Alembic batch migration that rebuilds `messages` on SQLite drops these triggers; such a
migration must create them again (`intake check` reports a missing search trigger).

Revision ID: 0008_text_search
Revises: 0007_users
Create Date: 2026-12-01 22:50:00
"""

from __future__ import annotations

from alembic import op

revision = "0008_text_search"
down_revision = "0007_users"
branch_labels = None
depends_on = None

# SQLite: the document of row `r` (NEW in a trigger, messages in the backfill).
_SQLITE_DOC = """lower(coalesce({r}.subject, '') || char(10) || CASE WHEN json_valid({r}.result) THEN
      coalesce(json_extract({r}.result, '$.submitter.name'), '') || char(10) ||
      coalesce(json_extract({r}.result, '$.submitter.organization'), '') || char(10) ||
      coalesce((SELECT group_concat(coalesce(json_extract(c.value, '$.text'), '') || char(10) ||
                                    coalesce(json_extract(c.value, '$.summary'), '') || char(10) ||
                                    coalesce(json_extract(c.value, '$.location'), ''), char(10))
                FROM json_each({r}.result, '$.comments') AS c WHERE c.type = 'object'), '')
    ELSE '' END)"""

# SQLite: the facets of row `r` (kind and targets, for the list's filters), as a SELECT of (message_pk, facet).
_SQLITE_FACETS = """SELECT DISTINCT {r}.id, f FROM (
      SELECT 'kind:' || coalesce(CASE WHEN json_valid({r}.result)
                                     THEN json_extract({r}.result, '$.submitter.kind') END, 'unknown') AS f
      UNION
      SELECT 'target:' || t.value FROM json_each(CASE WHEN json_valid({r}.result) THEN {r}.result END,
                                                 '$.comments') AS c, json_each(c.value, '$.targets') AS t
       WHERE c.type = 'object' AND t.type = 'text')"""
_SQLITE_FACETS_ALL = """SELECT DISTINCT m.id, 'kind:' || coalesce(CASE WHEN json_valid(m.result)
                                     THEN json_extract(m.result, '$.submitter.kind') END, 'unknown') FROM messages AS m
    UNION
    SELECT DISTINCT m.id, 'target:' || t.value FROM messages AS m,
           json_each(CASE WHEN json_valid(m.result) THEN m.result END, '$.comments') AS c,
           json_each(c.value, '$.targets') AS t WHERE c.type = 'object' AND t.type = 'text'"""


def _order_index() -> None:
    # The log's order (arrival, then id) in one index: a page deep in 100,000 records is an index-only walk.
    # Not in batch mode: a batch on SQLite may rebuild the table, which would drop the search triggers.
    op.create_index("ix_messages_received_at_id", "messages", ["received_at", "id"], unique=False)


_PG_FUNCTION = r"""
CREATE OR REPLACE FUNCTION intake_record_search_doc(subject text, result json) RETURNS text
LANGUAGE plpgsql AS $$
DECLARE doc text;
BEGIN
  BEGIN
    doc := concat_ws(E'\n', subject, result->'submitter'->>'name', result->'submitter'->>'organization',
      (SELECT string_agg(concat_ws(E'\n', c->>'text', c->>'summary', c->>'location'), E'\n')
         FROM json_array_elements(CASE WHEN json_typeof(result->'comments') = 'array'
                                       THEN result->'comments' END) AS c
        WHERE json_typeof(c) = 'object'));
    RETURN lower(normalize(coalesce(doc, ''), NFKC));
  EXCEPTION WHEN others THEN
    RETURN lower(coalesce(subject, ''));
  END;
END $$;

CREATE OR REPLACE FUNCTION intake_record_facets(result json) RETURNS SETOF text
LANGUAGE plpgsql AS $$
BEGIN
  BEGIN
    RETURN QUERY SELECT DISTINCT f FROM (
      SELECT 'kind:' || coalesce(result->'submitter'->>'kind', 'unknown') AS f
      UNION
      SELECT 'target:' || t FROM json_array_elements(CASE WHEN json_typeof(result->'comments') = 'array'
                                                          THEN result->'comments' END) AS c,
                                 json_array_elements_text(CASE WHEN json_typeof(c->'targets') = 'array'
                                                               THEN c->'targets' END) AS t) AS x;
  EXCEPTION WHEN others THEN
    RETURN QUERY SELECT 'kind:unknown';
  END;
END $$;

CREATE OR REPLACE FUNCTION intake_record_search() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  INSERT INTO record_search (message_pk, body) VALUES (NEW.id, intake_record_search_doc(NEW.subject, NEW.result))
    ON CONFLICT (message_pk) DO UPDATE SET body = EXCLUDED.body;
  DELETE FROM record_facets WHERE message_pk = NEW.id;
  INSERT INTO record_facets (message_pk, facet) SELECT NEW.id, f FROM intake_record_facets(NEW.result) AS f;
  RETURN NULL;
END $$;
"""


def upgrade() -> None:
    if op.get_context().dialect.name == "postgresql":
        op.execute("CREATE EXTENSION IF NOT EXISTS pg_trgm")
        op.execute("CREATE TABLE record_search (message_pk BIGINT PRIMARY KEY REFERENCES messages (id)"
                   " ON DELETE CASCADE, body TEXT NOT NULL)")
        op.execute("CREATE INDEX ix_record_search_body_trgm ON record_search USING gin (body gin_trgm_ops)")
        op.execute("CREATE TABLE record_facets (message_pk BIGINT NOT NULL REFERENCES messages (id)"
                   " ON DELETE CASCADE, facet TEXT NOT NULL, PRIMARY KEY (facet, message_pk))")
        op.execute("CREATE INDEX ix_record_facets_message_pk ON record_facets (message_pk)")
        op.execute(_PG_FUNCTION)
        op.execute("CREATE TRIGGER record_search_refresh AFTER INSERT OR UPDATE OF subject, result ON messages"
                   " FOR EACH ROW EXECUTE FUNCTION intake_record_search()")
        op.execute("INSERT INTO record_search (message_pk, body)"
                   " SELECT id, intake_record_search_doc(subject, result) FROM messages")
        op.execute("INSERT INTO record_facets (message_pk, facet)"
                   " SELECT m.id, f FROM messages AS m, intake_record_facets(m.result) AS f")
        _order_index()
        return
    op.execute("CREATE VIRTUAL TABLE record_search USING fts5(body, tokenize = 'trigram')")
    op.execute("CREATE TABLE record_facets (message_pk INTEGER NOT NULL REFERENCES messages (id) ON DELETE CASCADE,"
               " facet TEXT NOT NULL, PRIMARY KEY (facet, message_pk)) WITHOUT ROWID")
    op.execute("CREATE INDEX ix_record_facets_message_pk ON record_facets (message_pk)")
    new, facets = _SQLITE_DOC.format(r="NEW"), _SQLITE_FACETS.format(r="NEW")
    op.execute(f"CREATE TRIGGER record_search_insert AFTER INSERT ON messages BEGIN"
               f" INSERT INTO record_search (rowid, body) VALUES (NEW.id, {new});"
               f" INSERT INTO record_facets (message_pk, facet) {facets}; END")
    op.execute(f"CREATE TRIGGER record_search_update AFTER UPDATE OF subject, result ON messages BEGIN"
               f" DELETE FROM record_search WHERE rowid = OLD.id;"
               f" INSERT INTO record_search (rowid, body) VALUES (NEW.id, {new});"
               f" DELETE FROM record_facets WHERE message_pk = OLD.id;"
               f" INSERT INTO record_facets (message_pk, facet) {facets}; END")
    op.execute("CREATE TRIGGER record_search_delete AFTER DELETE ON messages BEGIN"
               " DELETE FROM record_search WHERE rowid = OLD.id;"
               " DELETE FROM record_facets WHERE message_pk = OLD.id; END")
    op.execute(f"INSERT INTO record_search (rowid, body) SELECT id, {_SQLITE_DOC.format(r='messages')} FROM messages")
    op.execute(f"INSERT INTO record_facets (message_pk, facet) {_SQLITE_FACETS_ALL}")
    _order_index()


def downgrade() -> None:
    if op.get_context().dialect.name == "postgresql":
        op.execute("DROP TRIGGER IF EXISTS record_search_refresh ON messages")
        op.execute("DROP FUNCTION IF EXISTS intake_record_search()")
        op.execute("DROP FUNCTION IF EXISTS intake_record_search_doc(text, json)")
        op.execute("DROP FUNCTION IF EXISTS intake_record_facets(json)")
        op.execute("DROP TABLE IF EXISTS record_search")
        op.execute("DROP TABLE IF EXISTS record_facets")
        op.execute("DROP INDEX IF EXISTS ix_messages_received_at_id")
        return
    for name in ("record_search_insert", "record_search_update", "record_search_delete"):
        op.execute(f"DROP TRIGGER IF EXISTS {name}")
    op.execute("DROP TABLE IF EXISTS record_search")
    op.execute("DROP TABLE IF EXISTS record_facets")
    op.execute("DROP INDEX IF EXISTS ix_messages_received_at_id")
