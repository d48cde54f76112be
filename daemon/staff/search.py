"""Free-text search words as index lookups in `record_search` (migrations 0008 and 0009), on both databases.

A word matches a record when the record's search document holds it as a substring (the document and the
word are NFKC on PostgreSQL, the word is NFKC and tried in full width too on SQLite; case is folded). Each
word is one plan, turned into a condition on `record_search`:

- three characters or more: the trigram indexes (PostgreSQL: `LIKE` through the GIN `gin_trgm_ops` index;
  SQLite: an FTS5 `MATCH`, whose trigram tokenizer folds case).
- one or two characters, which no trigram index can answer (every document was scanned: 935 ms at p95 for
  「AI」 on SQLite, a rare word ~1 s on PostgreSQL):
  - PostgreSQL: the GIN index over `intake_short_grams(body)`, every distinct one- and two-character
    substring of the document (0009); `@>` on it is exact, so the database never reads the document.
  - SQLite: every occurrence of the word is the start of a trigram, since 0009 ends each document with two
    newlines (a word never holds whitespace). So the trigrams that begin with it, read from the index's
    vocabulary (`record_search_terms`, a key range), OR-ed into one `MATCH`, find exactly the documents
    holding it. FTS5 walks an OR of k terms in O(k) per row, so a word with more than MAX_TERMS trigrams
    (a frequent single character) falls back to the scan, which then stops early in most documents.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy import select, text
from sqlalchemy.orm import Session
from sqlalchemy.sql.elements import ColumnElement

from daemon.store.db import Message

SHORT = 2  # words of up to this many characters cannot use a trigram index
DENSE = 5000  # PostgreSQL: a short word in more records than this is tested along the log's order
MAX_TERMS = 128  # trigrams OR-ed into one FTS5 MATCH; beyond this the OR costs more than a scan
_FULLWIDTH = {c: c + 0xFEE0 for c in range(0x21, 0x7F)}  # ASCII → its full-width form (！ … ～)
_LAST = "\U0010ffff" * 2  # after every trigram that begins with a short word, in the index's (code point) order


@dataclass(frozen=True)
class Plan:
    """One word's condition on `record_search`: SQL text over its columns and the parameters it binds."""

    sql: str
    params: dict[str, Any]
    match: str | None = None  # SQLite: the FTS5 query, when the condition is a MATCH (merged with others)
    count_sql: str | None = None  # the condition for the count, when it differs from the page's


_NOTHING = Plan("0 = 1", {})


def _like_pattern(word: str) -> str:
    escaped = word.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return f"%{escaped}%"


def _quoted(term: str) -> str:
    return '"' + term.replace('"', '""') + '"'


def plan(session: Session, word: str, n: int) -> Plan:
    """The condition for one word (already NFKC and lower-cased, as `split_words` gives it)."""
    if session.get_bind().dialect.name == "postgresql":
        if len(word) <= SHORT:
            # The expression must be the index's own for the planner to use it. It has no statistics (0009),
            # so the planner always takes the index: right for a rare word, but for one in most records the
            # page should walk the log's order and test each record (65 rows read for 50 hits, 1 ms, instead
            # of fetching and sorting 74,571: 264 ms). A capped probe of the index tells which it is.
            grams = f"intake_short_grams(body) @> ARRAY[CAST(:w{n} AS text)]"
            hits = session.execute(text(f"SELECT count(*) FROM (SELECT 1 FROM record_search WHERE {grams}"
                                        f" LIMIT {DENSE + 1}) AS hits"), {f"w{n}": word}).scalar_one()
            if hits > DENSE:
                return Plan(f"body LIKE :l{n}", {f"w{n}": word, f"l{n}": _like_pattern(word)}, count_sql=grams)
            return Plan(grams, {f"w{n}": word})
        # The document is NFKC and lower-cased by the database: one LIKE, answered by the GIN trigram index.
        return Plan(f"body LIKE :w{n}", {f"w{n}": _like_pattern(word)})
    # SQLite has no NFKC: the document is as written (FTS5 folds case), so the word is looked up as typed
    # in NFKC and in full width (ＡＩ for AI).
    variants = list(dict.fromkeys([word, word.translate(_FULLWIDTH)]))
    if len(word) > SHORT:
        match = " OR ".join(_quoted(v) for v in variants)
        return Plan(f"record_search MATCH :w{n}", {f"w{n}": match}, match)
    terms: list[str] = []
    for v in variants:
        terms += session.scalars(text("SELECT term FROM record_search_terms WHERE term >= :lo AND term <= :hi"
                                      " LIMIT :k"), {"lo": v, "hi": v + _LAST, "k": MAX_TERMS + 1})
    if not terms:
        return _NOTHING
    if len(terms) <= MAX_TERMS:
        match = " OR ".join(_quoted(t) for t in terms)
        return Plan(f"record_search MATCH :w{n}", {f"w{n}": match}, match)
    params = {f"w{n}_{i}": v for i, v in enumerate(variants)}
    return Plan("(" + " OR ".join(f"instr(body, :w{n}_{i}) > 0" for i in range(len(variants))) + ")", params)


def _key(session: Session) -> str:
    return "message_pk" if session.get_bind().dialect.name == "postgresql" else "rowid"


def word_clause(session: Session, word: str, n: int) -> tuple[ColumnElement[bool], dict[str, Any]]:
    """Records whose search document holds `word`: a condition on messages, for the page's statement."""
    p = plan(session, word, n)
    return Message.id.in_(select(text(_key(session))).select_from(text("record_search")).where(text(p.sql))), p.params


def count_words(session: Session, words: list[str]) -> int:
    """How many records hold every word, when the words are the only filter: counted in `record_search`
    alone (one row per record, kept by the triggers), without the semi-join to messages (on SQLite 116 ms
    of the 120 for 「AI」; on PostgreSQL a parallel hash join of 73,000 ids for 脆弱性)."""
    plans = [plan(session, w, n) for n, w in enumerate(words)]
    if any(p is _NOTHING for p in plans):
        return 0
    # SQLite: one MATCH with AND (FTS5 intersects the doclists itself); other conditions stay as they are.
    matches = [p.match for p in plans if p.match is not None]
    conds = [p.count_sql or p.sql for p in plans if p.match is None]
    params: dict[str, Any] = {k: v for p in plans if p.match is None for k, v in p.params.items()}
    if matches:
        conds.append("record_search MATCH :all_words")
        params["all_words"] = " AND ".join(f"({m})" for m in matches)
    sql = "SELECT count(*) FROM record_search WHERE " + " AND ".join(conds)
    return int(session.execute(text(sql), params).scalar_one())


__all__ = ["MAX_TERMS", "SHORT", "Plan", "count_words", "plan", "word_clause"]
