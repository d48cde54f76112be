"""short word search: words of one or two characters through an index too (issue 17)

A trigram index cannot answer a word shorter than three characters, so such a word (「AI」, 「案」) read every
search document: 935 ms at p95 on SQLite for 100,000 records, ~1 s on PostgreSQL for a rare one.

- PostgreSQL: `intake_short_grams(body)`, every distinct one- and two-character substring of the document,
  under a GIN index; `@>` on it is exact (no recheck), so a short word is one index probe. The function is
  IMMUTABLE and linear (regexp_matches over the document twice, not substr at each position, which is
  quadratic in UTF-8); ANALYZE skips the expression (statistics 0): computing it for the sample costs a
  minute and the planner needs no histogram of grams.
- SQLite: every document now ends with two newlines, so each occurrence of a short word begins a trigram
  of the FTS5 index, and `record_search_terms` (fts5vocab) lists the index's trigrams: the ones that begin
  with the word, read as a key range, are OR-ed into one MATCH (daemon/staff/search.py). The triggers of
  0008 are created again with the new document and every document is rebuilt.

Careful, as for 0008: an Alembic batch migration that rebuilds `messages` on SQLite drops the triggers;
such a migration must create them again as this one does.

Revision ID: 0009_short_word_search
Revises: 0008_text_search
Create Date: 2026-12-02 01:10:00
"""

from __future__ import annotations

from alembic import op

revision = "0009_short_word_search"
down_revision = "0008_text_search"
branch_labels = None
depends_on = None

# SQLite: the document of row `r`, as 0008 wrote it (NEW in a trigger, messages in the backfill).
_SQLITE_DOC_0008 = """lower(coalesce({r}.subject, '') || char(10) || CASE WHEN json_valid({r}.result) THEN
      coalesce(json_extract({r}.result, '$.submitter.name'), '') || char(10) ||
      coalesce(json_extract({r}.result, '$.submitter.organization'), '') || char(10) ||
      coalesce((SELECT group_concat(coalesce(json_extract(c.value, '$.text'), '') || char(10) ||
                                    coalesce(json_extract(c.value, '$.summary'), '') || char(10) ||
                                    coalesce(json_extract(c.value, '$.location'), ''), char(10))
                FROM json_each({r}.result, '$.comments') AS c WHERE c.type = 'object'), '')
    ELSE '' END)"""
# 0009: the same with two newlines at the end, so the last character of the text still begins a trigram.
_SQLITE_DOC_0009 = _SQLITE_DOC_0008 + " || char(10) || char(10)"

# SQLite: the facets of row `r`, unchanged from 0008 (the triggers that keep them are created again here).
_SQLITE_FACETS = """SELECT DISTINCT {r}.id, f FROM (
      SELECT 'kind:' || coalesce(CASE WHEN json_valid({r}.result)
                                     THEN json_extract({r}.result, '$.submitter.kind') END, 'unknown') AS f
      UNION
      SELECT 'target:' || t.value FROM json_each(CASE WHEN json_valid({r}.result) THEN {r}.result END,
                                                 '$.comments') AS c, json_each(c.value, '$.targets') AS t
       WHERE c.type = 'object' AND t.type = 'text')"""

_PG_FUNCTION = r"""
CREATE OR REPLACE FUNCTION intake_short_grams(body text) RETURNS text[]
LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE AS $$
  SELECT coalesce(array_agg(DISTINCT g), '{}') FROM (
    SELECT regexp_split_to_table(body, '') AS g
    UNION ALL SELECT (regexp_matches(body, '..', 'g'))[1]
    UNION ALL SELECT (regexp_matches(substr(body, 2), '..', 'g'))[1]) AS grams
$$
"""


def _sqlite_triggers(doc: str) -> None:
    for name in ("record_search_insert", "record_search_update", "record_search_delete"):
        op.execute(f"DROP TRIGGER IF EXISTS {name}")
    new, facets = doc.format(r="NEW"), _SQLITE_FACETS.format(r="NEW")
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
    op.execute("DELETE FROM record_search")
    op.execute(f"INSERT INTO record_search (rowid, body) SELECT id, {doc.format(r='messages')} FROM messages")


def upgrade() -> None:
    if op.get_context().dialect.name == "postgresql":
        op.execute(_PG_FUNCTION)
        op.execute("CREATE INDEX ix_record_search_short_grams ON record_search"
                   " USING gin (intake_short_grams(body))")
        op.execute("ALTER INDEX ix_record_search_short_grams ALTER COLUMN 1 SET STATISTICS 0")
        return
    _sqlite_triggers(_SQLITE_DOC_0009)
    op.execute("CREATE VIRTUAL TABLE record_search_terms USING fts5vocab(record_search, 'row')")


def downgrade() -> None:
    if op.get_context().dialect.name == "postgresql":
        op.execute("DROP INDEX IF EXISTS ix_record_search_short_grams")
        op.execute("DROP FUNCTION IF EXISTS intake_short_grams(text)")
        return
    op.execute("DROP TABLE IF EXISTS record_search_terms")
    _sqlite_triggers(_SQLITE_DOC_0008)
