"""From comments to 「提出された意見及び考え方」 (issue 18), through the database layer, on SQLite and PostgreSQL.

A fixture of 41 mails goes through the real pipeline (real clamd): individuals, one of them twice; a form letter
sent by 15 people; a near-identical one by 5; two named organisations with 意見書 files; two anonymous
organisations; a company's first mail and its corrected resend; and mail that must not count (late, rejected,
duplicate, infected). The outline of rules/consultation.toml places the items; staff move, merge, split,
supersede and answer; the result document's 者 and 件 equal the hand count below, and the document read back
from LibreOffice's PDF holds every row in its section and no individual's personal data.
"""

from __future__ import annotations

import datetime as dt
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import render
from sqlalchemy import select
from sqlalchemy.orm import Session

from daemon import logs
from daemon.config import Config, ScanConfig
from daemon.model import Arrival
from daemon.pipeline import Intake
from daemon.rules import load_rules
from daemon.staff import review
from daemon.staff.results import build, document
from daemon.store.db import Event, make_engine, make_sessionmaker
from daemon.store.review import ReviewEvent, ReviewGroup, ReviewItem
from devkit.clamd import Clamd, eicar
from devkit.ikensho import ikensho_docx, ikensho_xlsx

from conftest import BACKENDS, RULES, fresh_database
from mails import mail

JST = dt.timezone(dt.timedelta(hours=9))
RULESET = load_rules(RULES)
DOCS = RULES.parent.parent / "docs"


def at(day: str, hm: str = "10:00") -> dt.datetime:
    return dt.datetime.fromisoformat(f"{day}T{hm}:00").replace(tzinfo=JST)


def person(name: str, n: int, body: str) -> str:
    return (f"氏名：{name}\n住所：東京都千代田区霞が関{n}-1-1\n電話番号：03-{3000 + n}-{1000 + n}\n"
            f"メールアドレス：p{n}@example.jp\n\n{body}\n")


FORM = "本編 P.12 について、中小企業への支援策を拡充すべきである。特に、AIの安全性評価に要する費用の補助を求める。"
NEAR = ("本編 P.20 について、生成AIの学習データの透明性を確保するため、事業者に学習データの概要を公表する義務を"
        "課すべきである。{city}在住の一市民として強く要望する。")
CITIES = ["仙台市", "横浜市", "京都市", "神戸市", "熊本市"]
# Ten individuals, each with an opinion on a different part of the draft (section by the outline).
SINGLES = [
    ("本編 P.3 について、「AIシステム」の定義を明確にすべきである。", "main-1"),
    ("本編 P.8 について、プロンプトインジェクションの例を増やしてほしい。", "main-2"),
    ("本編 第3章 について、評価手法を統一すべきである。", "main-3"),
    ("本編 P.25 について、ログの保存期間の目安を示してほしい。", "main-3"),
    ("本編 P.45 について、今後の検討の工程表を示してほしい。", "main-4"),
    ("別添 P.5 について、チェックリストの記入例を示してほしい。", "annex"),
    ("別添 P.30 について、監査手順の例示を増やすべきである。", "annex"),
    ("ガイドライン全体として、分かりやすい概要版を作成してほしい。", "other"),
    ("本編 2.1節 について、脅威の分類に出典を付けるべきである。", "main-2"),
    ("本編 P.99 について、参考文献の一覧を付けてほしい。", "other"),
]
SECOND = ("本編 P.42 について、研修教材の提供を求める。", "main-4")  # the first individual's second mail


@dataclass
class Loaded:
    url: str
    env: dict[str, str]
    ids: dict[str, int]
    tmp: Path


def fixture_mails(c: Clamd) -> list[tuple[str, bytes, dt.datetime]]:
    out: list[tuple[str, bytes, dt.datetime]] = []

    def add(key: str, raw: bytes, when: dt.datetime) -> None:
        out.append((key, raw, when))

    for i, (body, _section) in enumerate(SINGLES, 1):
        when = at("2026-01-05", f"{8 + i:02d}:00")
        add(f"P{i}", mail(body=person(f"個人 {i}号", i, body), sender=f"p{i}@example.jp", subject=f"意見 P{i}",
                          received=when), when)
    when = at("2026-01-20", "09:00")
    add("P1b", mail(body=person("個人 1号", 1, SECOND[0]), sender="p1@example.jp", subject="意見 追加",
                    received=when), when)
    for i in range(1, 16):
        when = at("2026-01-1" + str(i % 9), f"{8 + i % 12:02d}:{i:02d}")
        add(f"F{i}", mail(body=person(f"形式 {i}号", 100 + i, FORM), sender=f"f{i}@example.jp", subject="意見",
                          received=when), when)
    for i, city in enumerate(CITIES, 1):
        when = at("2026-01-22", f"1{i}:00")
        add(f"N{i}", mail(body=person(f"類似 {i}号", 200 + i, NEAR.format(city=city)), sender=f"n{i}@example.jp",
                          subject="意見", received=when), when)
    o1 = ikensho_docx([("名称", "株式会社サンプル商事"), ("代表者氏名", "代表取締役 高橋 健"),
                       ("所在地", "東京都千代田区丸の内1-2-3"), ("電話番号", "03-5555-6666"),
                       ("連絡担当者", "田中 美咲")],
                      [("本編 P.3", "用語の定義を条文の形で示すべきである。", "解釈が分かれるため。"),
                       ("別添 P.12", "図表の出典を示してほしい。", "検証できないため。"),
                       ("本編 P.30", "中小企業向けの手順を追加してほしい。", "負担が大きいため。")])
    when = at("2026-01-09", "10:00")
    add("O1", mail(body="別添のとおり意見を提出します。", sender="tanaka@sample-shoji.example.jp",
                   attachments=[("意見書.docx", o1, "application/octet-stream")], received=when), when)
    o2 = ikensho_xlsx([("団体名", "一般社団法人テスト協会"), ("代表者", "理事長 伊藤 誠"),
                       ("所在地", "神奈川県横浜市西区みなとみらい2-2-1"), ("電話", "045-123-4567")],
                      [("別添 P.15", "用語集を追加してほしい。", "初学者に分かりにくいため。"),
                       ("本編 P.46", "施行時期を明記すべきである。", "準備期間が必要なため。")])
    when = at("2026-01-15", "16:20")
    add("O2", mail(body="意見書を添付します。", sender="info@test-kyokai.example.or.jp",
                   attachments=[("意見書.xlsx", o2, "application/octet-stream")], received=when), when)
    for i, (org, page) in enumerate([("匿名株式会社ヒミツ技研", "別添 P.40"), ("有限会社ナイショ", "本編 P.15")], 1):
        when = at("2026-01-2" + str(i), "09:30")
        add(f"A{i}", mail(body=f"名称：{org}\n代表者氏名：中村 秘密{i}\n所在地：京都府京都市下京区烏丸通{i}-1\n"
                               f"電話番号：075-999-000{i}\n匿名希望\n\n{page} について、例示を増やすべきである。{i}",
                          sender=f"kikaku{i}@himitsu.example.jp", received=when), when)
    rows_v1 = [("本編 P.33", "モデルの評価は年1回実施すべきである。", "変化が速いため。"),
               ("別添 P.50", "様式の記入欄を広げてほしい。", "書ききれないため。")]
    rows_v2 = [("本編 P.33", "モデルの評価は少なくとも半年に1回実施すべきである。", "変化が速いため。"),
               ("別添 P.50", "様式の記入欄を広げてほしい。", "書ききれないため。")]
    fields = [("名称", "株式会社コレクト"), ("代表者氏名", "代表取締役 正木 直"), ("所在地", "大阪府大阪市北区1-1")]
    for key, rows, when in (("C1", rows_v1, at("2026-01-23", "10:00")), ("C2", rows_v2, at("2026-01-24", "10:00"))):
        add(key, mail(body="意見書を提出します。" + ("（訂正版）" if key == "C2" else ""),
                      sender="info@collect.example.jp", subject="意見" + key,
                      attachments=[("意見書.docx", ikensho_docx(fields, rows), "application/octet-stream")],
                      received=when), when)
    when = at("2026-01-30", "00:10")
    add("L1", mail(body=person("遅延 太郎", 300, "本編 P.5 について、締切を延長してほしい。"), sender="late@example.jp",
                   received=when), when)
    when = at("2026-01-10", "10:00")
    add("R1", mail(body=person("却下 一子", 301, "意見はPDFで添付します。"), sender="pdf@example.jp", received=when,
                   attachments=[("意見.pdf", b"%PDF-1.4\n%%EOF\n", "application/pdf")]), when)
    first = out[1][1]
    when = at("2026-01-05", "10:05")
    add("D1", b"Received: from mx2.example.jp by mail.example.go.jp; Mon, 05 Jan 2026 10:05:00 +0900\r\n" + first, when)
    when = at("2026-01-12", "10:00")
    add("Q1", mail(body="本編 P.9 について意見。", sender="virus@example.jp", received=when,
                   attachments=[("意見書.txt", eicar(), "text/plain")]), when)
    return out


# The hand count (after C1 is superseded by C2): individuals 10 (P1 twice) + 15 (form) + 5 (near);
# organisations サンプル商事, テスト協会, 2 anonymous, コレクト. Items: P 11, F 15, N 5, O1 3, O2 2, A 2, C2 2.
SUBMITTERS = 10 + 15 + 5 + 1 + 1 + 2 + 1
ITEMS = 11 + 15 + 5 + 3 + 2 + 2 + 2
# Rows: P 11, form 1, near 1, O1 3, O2 2, A 2, C2 2 (C1's two rows leave with it).
ROWS = 11 + 1 + 1 + 3 + 2 + 2 + 2


@pytest.fixture(scope="module", params=BACKENDS)
def loaded(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory, clamd: Clamd) -> Iterator[Loaded]:
    tmp = tmp_path_factory.mktemp(f"review-{request.param}")
    with fresh_database(request.param, tmp, "intake_review") as url:
        yield load_fixture(url, tmp, clamd)


def load_fixture(url: str, tmp: Path, clamd: Clamd) -> Loaded:
    config = Config(data_dir=tmp / "data", database_url=url, rules_path=RULES, scan=ScanConfig(clamd=clamd.url))
    logs.configure("WARNING")
    intake = Intake.from_config(config, RULESET)
    intake.raw_store.init()
    ids = {key: intake.process(Arrival(raw=raw, source="ingest", received_at=when, received_source="argument")).id
           for key, raw, when in fixture_mails(clamd)}
    intake.sessions.kw["bind"].dispose()
    env = {**os.environ, "INTAKE_DATABASE_URL": url, "INTAKE_DATA_DIR": str(config.data_dir),
           "INTAKE_RULES": str(RULES), "INTAKE_CLAMD": clamd.url, "INTAKE_CONFIG": "/dev/null"}
    return Loaded(url, env, ids, tmp)


@pytest.fixture
def session(loaded: Loaded) -> Iterator[Session]:
    engine = make_engine(loaded.url)
    with make_sessionmaker(engine)() as s:
        yield s
    engine.dispose()


def rows_of(session: Session) -> dict[int, list[int]]:
    """group id -> record ids of its items."""
    out: dict[int, list[int]] = {}
    for ri in session.scalars(select(ReviewItem).order_by(ReviewItem.id)):
        out.setdefault(ri.group_id, []).append(ri.message_pk)
    return out


def group_of(session: Session, record_id: int, index: int = 1) -> ReviewGroup:
    ri = session.scalars(select(ReviewItem).where(ReviewItem.message_pk == record_id,
                                                  ReviewItem.item_index == index)).one()
    group = session.get(ReviewGroup, ri.group_id)
    assert group is not None
    return group


def test_sync_places_every_counted_item_and_groups_the_form_letters(loaded: Loaded, session: Session) -> None:
    statuses = {k: v for k, v in loaded.ids.items()}
    assert len(statuses) == 41
    added = review.sync(session, RULESET, "tester")
    session.commit()
    assert review.sync(session, RULESET, "tester") == 0  # a second sync finds nothing new
    # every item of the counted records, C1 included (it is not superseded yet): 40 + C1's 2
    assert added == ITEMS + 2
    ids = loaded.ids
    for i, (_body, section) in enumerate(SINGLES, 1):
        assert group_of(session, ids[f"P{i}"]).section == section, f"P{i}"
    assert group_of(session, ids["P1b"]).section == SECOND[1]
    form = group_of(session, ids["F1"])
    assert form.section == "main-2"
    assert sorted(rows_of(session)[form.id]) == sorted(ids[f"F{i}"] for i in range(1, 16))
    near = group_of(session, ids["N1"])
    assert sorted(rows_of(session)[near.id]) == sorted(ids[f"N{i}"] for i in range(1, 6))
    assert [group_of(session, ids["O1"], n).section for n in (1, 2, 3)] == ["main-1", "annex", "main-3"]
    assert group_of(session, ids["A1"]).section == "annex" and group_of(session, ids["A2"]).section == "main-2"
    # the resend's unchanged second item joined its first version's row: a form letter, until staff say otherwise
    assert group_of(session, ids["C1"], 2).id == group_of(session, ids["C2"], 2).id
    for key in ("L1", "R1", "D1", "Q1"):
        assert not session.scalars(select(ReviewItem).where(ReviewItem.message_pk == ids[key])).all(), key


def test_a_corrected_resend_replaces_the_first_mail_and_counts_once(loaded: Loaded, session: Session) -> None:
    review.sync(session, RULESET, "tester")
    ids = loaded.ids
    review.supersede(session, ids["C1"], ids["C2"], "reviewer1", "訂正版の再送")
    session.commit()
    with pytest.raises(review.ReviewError, match="すでに差し替え済み"):
        review.supersede(session, ids["C1"], ids["C2"], "reviewer1")
    with pytest.raises(review.ReviewError, match="差し替えられた記録"):
        review.supersede(session, ids["C2"], ids["C1"], "reviewer1")
    session.rollback()
    board = review.board(session, RULESET)
    on_board = {m.item.record_id for _s, _t, rows in board.sections for r in rows for m in r.members}
    assert ids["C1"] not in on_board and ids["C2"] in on_board
    shared = group_of(session, ids["C2"], 2)
    row = board.row(shared.id)
    assert row is not None and [m.item.record_id for m in row.members] == [ids["C2"]]  # no longer 同旨
    events = session.scalars(select(Event).where(Event.message_pk == ids["C1"], Event.action == "superseded")).all()
    assert len(events) == 1 and events[0].actor == "reviewer1" and str(ids["C2"]) in (events[0].note or "")
    doc = document(board, RULESET)
    assert (len(doc.submitters), doc.items) == (SUBMITTERS, ITEMS)
    assert doc.counts_line == f"計{SUBMITTERS}者（{ITEMS}件）（意見提出順、敬称略）"
    assert sum(len(s.rows) for s in doc.sections) == ROWS
    # restore and supersede again: the undo works and is in the history
    review.restore(session, ids["C1"], "reviewer1", "誤操作")
    session.commit()
    assert document(review.board(session, RULESET), RULESET).items == ITEMS + 2
    review.supersede(session, ids["C1"], ids["C2"], "reviewer1", "訂正版の再送")
    session.commit()
    actions = [e.action for e in session.scalars(select(ReviewEvent).where(ReviewEvent.message_pk == ids["C1"]))]
    assert actions == ["supersede", "restore", "supersede"]


def test_move_merge_and_split_change_the_rows_and_leave_a_history(loaded: Loaded, session: Session) -> None:
    review.sync(session, RULESET, "tester")
    ids = loaded.ids
    other = group_of(session, ids["P8"])
    assert other.section == "other"
    review.move(session, RULESET, other.id, "main-1", "reviewer1")
    with pytest.raises(review.ReviewError, match="目次にありません"):
        review.move(session, RULESET, other.id, "no-such-section", "reviewer1")
    a1, a2 = group_of(session, ids["A1"]), group_of(session, ids["A2"])
    assert review.merge(session, a1.id, [a2.id], "reviewer2") == 1
    session.commit()
    assert sorted(rows_of(session)[a1.id]) == sorted([ids["A1"], ids["A2"]])
    board = review.board(session, RULESET)
    assert board.row(a2.id) is None  # an emptied row leaves the document
    moved = board.row(other.id)
    assert moved is not None and dict((sid, rows) for sid, _t, rows in board.sections)["main-1"].count(moved) == 1
    item = session.scalars(select(ReviewItem).where(ReviewItem.message_pk == ids["A2"])).one()
    new_id = review.split(session, item.id, "reviewer2")
    session.commit()
    assert rows_of(session)[new_id] == [ids["A2"]] and rows_of(session)[a1.id] == [ids["A1"]]
    with pytest.raises(review.ReviewError, match="単独の行"):
        review.split(session, item.id, "reviewer2")
    session.rollback()
    history = [(e.action, e.actor) for e in review.history(session, a1.id)]
    assert ("merge", "reviewer2") in history and ("split", "reviewer2") in history
    assert [(e.action, e.detail["after"]) for e in review.history(session, other.id)] == [("move", "main-1")]
    # back as they were, for the document test
    review.move(session, RULESET, other.id, "other", "reviewer1")
    session.commit()


def test_two_reviewers_saving_one_answer_the_second_is_refused_with_the_current_text(loaded: Loaded) -> None:
    engine = make_engine(loaded.url)
    sessions = make_sessionmaker(engine)
    with sessions() as s:
        review.sync(s, RULESET, "tester")
        s.commit()
        gid = group_of(s, loaded.ids["F1"]).id
        version = s.get(ReviewGroup, gid).version  # type: ignore[union-attr]
    # Both opened the form on the same version; the first save wins …
    with sessions() as first:
        saved = review.save_answer(first, gid, "御意見として承ります。", None, "draft", version, "reviewer1")
        assert saved == version + 1
        first.commit()
    with sessions() as second:
        with pytest.raises(review.StaleAnswer) as caught:
            review.save_answer(second, gid, "上書きしようとした文", "有", "final", version, "reviewer2")
        second.rollback()
        # … and the second is shown what is stored now, by whom
        assert caught.value.current.answer == "御意見として承ります。"
        assert caught.value.current.answered_by == "reviewer1" and "reviewer1" in str(caught.value)
    with sessions() as s:
        stored = s.get(ReviewGroup, gid)
        assert stored is not None and stored.answer == "御意見として承ります。" and stored.version == version + 1
        # saved on the current version, it goes through; a final answer needs a text
        with pytest.raises(review.ReviewError, match="確定にできません"):
            review.save_answer(s, gid, "", None, "final", stored.version, "reviewer2")
        review.save_answer(s, gid, "御意見を踏まえ、第2章に支援策を追記します。", "有", "final", stored.version,
                           "reviewer2")
        s.commit()
        answers = [(e.actor, e.detail["answer"]) for e in review.history(s, gid) if e.action == "answer"]
        assert answers[-2:] == [("reviewer1", "御意見として承ります。"),
                                ("reviewer2", "御意見を踏まえ、第2章に支援策を追記します。")]
    engine.dispose()


def test_the_result_document_as_a_reader_sees_it(loaded: Loaded, session: Session) -> None:
    ids = loaded.ids
    if not session.get(review.Supersession, ids["C1"]):  # this test may run alone
        review.sync(session, RULESET, "tester")
        review.supersede(session, ids["C1"], ids["C2"], "reviewer1", "訂正版の再送")
        session.commit()
    doc = build(session, RULESET)
    assert (len(doc.submitters), doc.items) == (SUBMITTERS, ITEMS)
    assert doc.submitters.count("個人") == 30
    assert doc.submitters.count("法人・団体（匿名希望）") == 2
    names = [s for s in doc.submitters if s not in ("個人", "法人・団体（匿名希望）")]
    assert names == ["株式会社サンプル商事 代表取締役 高橋 健", "一般社団法人テスト協会 理事長 伊藤 誠",
                     "株式会社コレクト 代表取締役 正木 直"]  # in order of first submission
    form = next(r for s in doc.sections for r in s.rows if r.same == 15)
    assert form.submitters == ("個人（15者）",)
    assert [s.title for s in doc.sections][-1] == "その他・全般"
    for section in doc.sections:
        numbers = [f"意見{section.number}-{n}" for n in range(1, len(section.rows) + 1)]
        assert [r.number for r in section.rows] == numbers

    for fmt in ("docx", "xlsx"):
        out = loaded.tmp / f"result.{fmt}"
        done = subprocess.run([sys.executable, "-m", "daemon.cli", "export", "--format", f"result-{fmt}", "-o",
                               str(out)], env=loaded.env, capture_output=True, timeout=300)
        assert done.returncode == 0, done.stderr.decode()
        assert f"{SUBMITTERS}者" in done.stderr.decode() and f"{ITEMS}件" in done.stderr.decode()
        pdf = render.to_pdf(out)
        backend = loaded.url.split(":")[0].split("+")[0]
        pages = render.save_pages(pdf, f"review-result-{fmt}-{backend}")
        if fmt == "docx" and backend == "sqlite":  # the README's picture of the document
            DOCS.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(pages[1], DOCS / "result-document.png")
        flat = render.squeeze(render.pdf_text(pdf))
        assert render.squeeze(doc.counts_line) in flat
        for section in doc.sections:
            assert render.squeeze(section.heading) in flat
            for r in section.rows:
                assert render.squeeze(r.opinion) in flat, r.number
        assert render.squeeze("（同旨15件）") in flat and render.squeeze("（同旨5件）") in flat
        # each opinion after its own section's heading and before the next one
        for a, b in zip(doc.sections, doc.sections[1:], strict=False):
            start, end = flat.index(render.squeeze(a.heading)), flat.index(render.squeeze(b.heading))
            for r in a.rows:
                assert start < flat.index(render.squeeze(r.opinion), start) < end, r.number
        for i in range(1, 16):
            for private in (f"形式{i}号", f"f{i}@example.jp", f"霞が関{100 + i}-1-1"):
                assert private not in flat
        for i in range(1, 11):
            assert f"個人{i}号" not in flat and f"p{i}@example.jp" not in flat and f"03-{3000 + i}" not in flat
        assert "ヒミツ技研" not in flat and "ナイショ" not in flat and "中村秘密" not in flat
        assert "075-999" not in flat and "045-123-4567" not in flat


def intake(loaded: Loaded, *args: str) -> subprocess.CompletedProcess[str]:
    done = subprocess.run([sys.executable, "-m", "daemon.cli", *args], env=loaded.env, capture_output=True,
                          text=True, timeout=300)
    assert "Traceback" not in done.stderr, done.stderr
    return done


def test_the_terminal_door_does_the_same_operations(loaded: Loaded, session: Session) -> None:
    review.sync(session, RULESET, "tester")
    session.commit()
    row = group_of(session, loaded.ids["N1"])
    listing = intake(loaded, "review", "list", "--section", row.section)
    assert listing.returncode == 0 and f"\n{row.id} " in "\n" + listing.stdout.split("\n", 1)[1]
    assert intake(loaded, "review", "list", "--section", "nowhere").stderr.count("\n") == 1
    shown = intake(loaded, "review", "show", str(row.id))
    version = int(shown.stdout.split("version ", 1)[1].split()[0])
    saved = intake(loaded, "review", "answer", str(row.id), "--version", str(version), "--by", "cli-user",
                   "--text", "=HYPERLINK(\"x\") 学習データの公表は事業者の判断とします。", "--revised", "無",
                   "--state", "検討中")
    assert saved.returncode == 0, saved.stderr
    stale = intake(loaded, "review", "answer", str(row.id), "--version", str(version), "--by", "other",
                   "--text", "上書き")
    assert stale.returncode == 1 and "saved by cli-user" in stale.stderr and "学習データの公表" in stale.stderr
    session.expire_all()
    stored = session.get(ReviewGroup, row.id)
    assert stored is not None and stored.answer.startswith("=HYPERLINK") and stored.revised == "無"
    assert stored.state == "draft" and stored.answered_by == "cli-user"
    progress = intake(loaded, "review", "progress")
    assert progress.returncode == 0 and "検討中" in progress.stdout and "者（" in progress.stdout
    # counts only: no submitter's name or mail address anywhere in it
    names = [f"形式 {i}号" for i in range(1, 16)] + [f"個人 {i}号" for i in range(1, 11)] + ["サンプル商事", "@example"]
    assert not [n for n in names if n in progress.stdout], progress.stdout
    typo = intake(loaded, "review", "merge", str(row.id), "abc", "--by", "x")
    assert typo.returncode == 2 and typo.stderr.count("\n") == 1
