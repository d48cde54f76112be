"""受付一覧's search finds exactly the right records for words of one, two and more characters, on SQLite and
PostgreSQL (issue 17): a short word goes through its own index (migration 0009, daemon/staff/search.py), and
must find the same records a substring test over each field finds, at the very start and the very end of a
search document too, and never across two fields."""

from __future__ import annotations

import datetime as dt
import json
import unicodedata
from collections.abc import Iterator
from typing import Any

import pytest
from sqlalchemy import insert, text
from sqlalchemy.orm import Session

from daemon.staff import search
from daemon.staff.records import ListFilters, list_page, split_words
from daemon.store import migrate
from daemon.store.db import Message, make_engine, make_sessionmaker

T0 = dt.datetime(2026, 1, 5, 9, 0, tzinfo=dt.UTC)
# Many different characters after の in one record: more trigrams begin with の than one FTS5 MATCH takes
# (search.MAX_TERMS), so on SQLite the word goes the scan way; it must find the same records.
MANY = "".join("の" + chr(0x4E00 + i) for i in range(search.MAX_TERMS + 20))


def record(subject: str | None, *, name: str | None = None, org: str | None = None,
           items: list[tuple[str, str | None, str | None]] | None = None, status: str = "accepted",
           result: Any = ...) -> dict[str, Any]:
    """A row as the pipeline writes it; `items` are (text, 要旨, 該当箇所)."""
    comments = [{"text": t, "summary": s, "location": loc, "targets": ["main"]} for t, s, loc in items or []]
    return {"status": status, "reasons": [], "flags": [], "received_at": T0, "received_source": "test",
            "size": 1, "source": "test", "attempts": 0, "subject": subject, "defects": [],
            "result": {"comments": comments, "submitter": {"kind": "individual", "name": name,
                                                           "organization": org}} if result is ... else result}


ROWS = [
    record("AI利用への意見", items=[("本文です。", None, "本編 P.1")]),  # AI at the very start of the document
    record("意見", items=[("生成AIの課題について", "要旨：課題", "別添 P.2")]),
    record("意見", items=[("全角ＡＩも同じ語である", None, None)]),  # full width: NFKC makes it AI
    record("意見", items=[("関係のない本文", None, "本編 P.3 案")]),  # 案 at the very end of the document
    record("案"),  # the whole subject is one character; no comment items
    record("意見", name="山田 太郎", items=[("一つ目", None, None), ("二つ目", "要旨", "別添 P.4 QX")]),  # rare, last
    record("意見", name="太郎a", org="i社", items=[("a iは別々", None, None)]),  # a|i across fields or a space: no
    record("qx", result={}),  # no comment items at all: the document is the subject
    record("意見", items=[(MANY, None, None)], status="rejected"),
    record("意見書", items=[("修正案を提出する。生成ＡＩ", None, "本編 P.10")], status="rejected"),
]


def fields(row: dict[str, Any]) -> list[str]:
    result = row["result"] or {}
    sub = result.get("submitter") or {}
    out = [row["subject"] or "", sub.get("name") or "", sub.get("organization") or ""]
    for c in result.get("comments") or []:
        out += [c.get("text") or "", c.get("summary") or "", c.get("location") or ""]
    return out


def expected(word: str, status: str | None = None) -> set[int]:
    """The reference: the word (NFKC, lower-cased) is a substring of one field (NFKC, lower-cased)."""
    w = split_words(word)[0]
    return {n for n, row in enumerate(ROWS, 1) if (status is None or row["status"] == status)
            and any(w in unicodedata.normalize("NFKC", f).lower() for f in fields(row))}


@pytest.fixture
def session(db_url: str) -> Iterator[Session]:
    engine = make_engine(db_url)
    with engine.begin() as conn:
        conn.execute(insert(Message), ROWS)
    with make_sessionmaker(engine)() as s:
        yield s
    engine.dispose()


def found(session: Session, f: ListFilters) -> tuple[set[int], int]:
    page = list_page(session, f, per_page=1000)
    ids = {r.id for r in page.rows}
    assert len(ids) == len(page.rows) == page.total  # the total counts exactly the records listed
    return ids, page.total


@pytest.mark.parametrize(("word", "want"), [
    ("案", {4, 5, 10}),  # one character, at the very end and as the whole subject
    ("AI", {1, 2, 3, 10}),  # two characters, common: at the very start, in the text, in full width
    ("ａｉ", {1, 2, 3, 10}),  # typed in full width
    ("QX", {6, 8}),  # two characters, rare: at the very end of the document, and a whole subject
    ("ai", {1, 2, 3, 10}),
    ("生成ai", {2, 10}),  # three characters and more: the trigram index, as before
    ("の", {1, 2, 4, 9}),  # more trigrams than one MATCH takes (SQLite)
    ("a", {1, 2, 3, 7, 10}),
    ("p.", {1, 2, 4, 6, 10}),
    ("zz", set()),  # in no record: nothing, at once
])
def test_a_word_finds_exactly_the_records_that_hold_it(session: Session, word: str, want: set[int]) -> None:
    assert expected(word) == want, "the test's own reference disagrees with the table"
    ids, total = found(session, ListFilters(words=split_words(word)))  # the word alone: counted in record_search
    assert ids == want and total == len(want)
    ids, _ = found(session, ListFilters(words=split_words(word), status="rejected"))  # with a filter: the join
    assert ids == expected(word, "rejected")


def test_short_and_long_words_together_are_an_and(session: Session) -> None:
    assert found(session, ListFilters(words=split_words("AI 案")))[0] == {10}
    assert found(session, ListFilters(words=split_words("生成AI 課題 P.")))[0] == {2}
    assert found(session, ListFilters(words=split_words("QX zz")))[0] == set()


def test_a_short_word_is_an_index_lookup_not_a_scan(session: Session) -> None:
    """The plan of a short word's search reads the index, not every document."""
    if session.get_bind().dialect.name == "postgresql":
        session.execute(text("SET LOCAL enable_seqscan = off"))  # ten rows: a scan is cheaper, ask for the plan
        plan = "\n".join(session.scalars(text(
            "EXPLAIN SELECT count(*) FROM record_search WHERE intake_short_grams(body) @> ARRAY['qx']")))
        assert "ix_record_search_short_grams" in plan, plan
        return
    p = search.plan(session, "qx", 0)
    assert p.match is not None and "instr" not in p.sql, p  # the trigrams that begin with qx, in one MATCH
    assert p.match.count('"') >= 2


def test_documents_written_before_0009_are_rebuilt_so_a_word_at_the_end_is_found(empty_url: str) -> None:
    migrate.upgrade(empty_url, "0008_text_search")
    engine = make_engine(empty_url)
    with engine.begin() as conn:
        conn.execute(text(
            "INSERT INTO messages (status, reasons, flags, received_at, received_source, size, source, attempts,"
            " defects, result, created_at, updated_at, subject) VALUES ('accepted', '[]', '[]', :t, 'x', 1,"
            " 'ingest', 0, '[]', :r, :t, :t, '件名')"),
            {"t": T0, "r": json.dumps({"comments": [{"text": "本文", "location": "別添 P.9 末尾QX"}]})})
    engine.dispose()
    migrate.upgrade(empty_url)
    engine = make_engine(empty_url)
    with make_sessionmaker(engine)() as s:
        for word in ("QX", "x", "件名", "件", "末尾qx"):
            assert list_page(s, ListFilters(words=split_words(word))).total == 1, word
        assert list_page(s, ListFilters(words=["xq"])).total == 0
    engine.dispose()


@pytest.fixture(params=["sqlite", "postgres"])
def empty_url(request: pytest.FixtureRequest, tmp_path: Any) -> Iterator[str]:
    import uuid

    from sqlalchemy import create_engine
    from sqlalchemy.engine import make_url

    from conftest import PG_URL

    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'm.db'}"
        return
    if not PG_URL:
        pytest.skip("INTAKE_TEST_POSTGRES_URL is not set")
    name = f"intake_short_{uuid.uuid4().hex[:10]}"
    admin = create_engine(PG_URL, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    yield make_url(PG_URL).set(database=name).render_as_string(hide_password=False)
    with admin.connect() as conn:
        conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    admin.dispose()


def test_a_short_word_in_thousands_of_records_is_counted_and_paged_exactly(db_url: str) -> None:
    """Past search.DENSE hits PostgreSQL pages a short word along the log's order instead of the index: the
    same records, newest first, and the count from the index."""
    engine = make_engine(db_url)
    many = [{**record("意見", items=[(f"第{n}号 生成AIについて", None, None)]),
             "received_at": T0 + dt.timedelta(minutes=n)} for n in range(search.DENSE + 1)]
    with engine.begin() as conn:
        conn.execute(insert(Message), [*many, record("無関係", items=[("別の話", None, None)])])
    with make_sessionmaker(engine)() as s:
        page = list_page(s, ListFilters(words=["ai"]))
        assert page.total == search.DENSE + 1 and len(page.rows) == 50
        assert [r.received_at for r in page.rows] == sorted((r.received_at for r in page.rows), reverse=True)
        assert page.rows[0].received_at == T0 + dt.timedelta(minutes=search.DENSE)
        assert list_page(s, ListFilters(words=["ai"], status="accepted")).total == search.DENSE + 1
        assert list_page(s, ListFilters(words=["ai", "別"])).total == 0
    engine.dispose()
