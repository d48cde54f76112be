"""整理, 進捗 and the result document in the web application over HTTP (Starlette's TestClient, the real app,
real clamd, SQLite and PostgreSQL): roles and CSRF on every new POST, the optimistic lock of an answer as a
reviewer meets it, move/merge/split/supersede changing the rows as daemon/staff/review.py says, the 進捗 counts,
and the downloads. The browser walk through the same pages is test_web_review_e2e.py."""

from __future__ import annotations

import dataclasses
import datetime as dt
import io
import re
from collections.abc import Iterator
from typing import Any
from urllib.parse import unquote

import pytest
from docx import Document
from sqlalchemy import select
from starlette.testclient import TestClient
from web_client import PASSWORD, csrf_of, signed_in

from daemon.model import Arrival
from daemon.pipeline import Intake
from daemon.staff import accounts
from daemon.staff import review as rv
from daemon.store import users as _users  # noqa: F401  (the users table is in the metadata the tests truncate)
from daemon.store.review import ReviewEvent, ReviewGroup, ReviewItem, Supersession
from daemon.web.app import create_app
from daemon.web.settings import WebSettings
from devkit.ikensho import ikensho_docx

from mails import mail

HOSTILE = "<script>alert(1)</script>"
JST = dt.timezone(dt.timedelta(hours=9))
FORM = "本編 P.12 について、中小企業への支援策を拡充すべきである。特に、AIの安全性評価に要する費用の補助を求める。"
FORM_SENDERS = 4


def at(day: int, hour: int) -> dt.datetime:
    return dt.datetime(2026, 1, day, hour, 0, tzinfo=JST)


def person(name: str, n: int, body: str) -> str:
    return f"氏名：{name}\n住所：東京都千代田区霞が関{n}-1-1\n電話番号：03-{3000 + n}-{1000 + n}\n\n{body}\n"


@dataclasses.dataclass
class Site:
    app: Any
    intake: Intake
    ids: dict[str, int]


@pytest.fixture
def site(intake: Intake) -> Site:
    ids: dict[str, int] = {}

    def add(key: str, raw: bytes, when: dt.datetime) -> None:
        ids[key] = intake.process(Arrival(raw=raw, source="ingest", received_at=when, received_source="argument")).id

    add("p1", mail(body=person("個人 一号", 1, "本編 P.3 について、「AIシステム」の定義を明確にすべきである。"),
                   sender="p1@example.jp", received=at(5, 9)), at(5, 9))
    add("p2", mail(body=person("個人 二号", 2, "本編 P.8 について、プロンプトインジェクションの例を増やしてほしい。"),
                   sender="p2@example.jp", received=at(5, 10)), at(5, 10))
    add("p3", mail(body=person("個人 三号", 3, "ガイドライン全体として、概要版を作成してほしい。" + HOSTILE),
                   sender="p3@example.jp", received=at(5, 11)), at(5, 11))
    for i in range(1, FORM_SENDERS + 1):
        add(f"f{i}", mail(body=person(f"形式 {i}号", 100 + i, FORM), sender=f"f{i}@example.jp", received=at(6, 8 + i)),
            at(6, 8 + i))
    fields = [("名称", "株式会社コレクト"), ("代表者氏名", "代表取締役 正木 直"), ("所在地", "大阪府大阪市北区1-1")]
    for key, text, when in (("c1", "モデルの評価は年1回実施すべきである。", at(7, 10)),
                            ("c2", "モデルの評価は少なくとも半年に1回実施すべきである。", at(8, 10))):
        doc = ikensho_docx(fields, [("本編 P.33", text, "変化が速いため。")])
        add(key, mail(body="意見書を提出します。", sender="info@collect.example.jp", subject="意見" + key,
                      attachments=[("意見書.docx", doc, "application/octet-stream")], received=when), when)
    with intake.sessions.begin() as session:
        for name, role in (("viewer1", "viewer"), ("reviewer1", "reviewer"), ("reviewer2", "reviewer")):
            accounts.add(session, name, role, PASSWORD)
    settings = dataclasses.replace(WebSettings.from_config(intake.config), cookie_secure=False)
    return Site(create_app(intake.config, intake.rules, settings, intake.sessions), intake, ids)


@pytest.fixture
def reviewer(site: Site) -> Iterator[TestClient]:
    with signed_in(site.app, "reviewer1") as client:
        yield client


@pytest.fixture
def viewer(site: Site) -> Iterator[TestClient]:
    with signed_in(site.app, "viewer1") as client:
        yield client


def group_of(site: Site, key: str, index: int = 1) -> ReviewGroup:
    with site.intake.sessions() as session:
        ri = session.scalars(select(ReviewItem).where(ReviewItem.message_pk == site.ids[key],
                                                      ReviewItem.item_index == index)).one()
        group = session.get(ReviewGroup, ri.group_id)
        assert group is not None
        return group


def members(site: Site, gid: int) -> list[int]:
    with site.intake.sessions() as session:
        return sorted(session.scalars(select(ReviewItem.message_pk).where(ReviewItem.group_id == gid)))


def item_id(site: Site, key: str) -> int:
    with site.intake.sessions() as session:
        return int(session.scalars(select(ReviewItem.id).where(ReviewItem.message_pk == site.ids[key])).one())


def row_numbers(html: str) -> list[str]:
    return re.findall(r'<a href="/review/rows/\d+">(意見\d+-\d+)</a>', html)


def event_count(site: Site) -> int:
    with site.intake.sessions() as session:
        return len(session.scalars(select(ReviewEvent.id)).all())


# -- 整理 -----------------------------------------------------------------------------------------------
def test_the_review_page_syncs_and_lists_every_section_with_its_rows(reviewer: TestClient, site: Site) -> None:
    html = reviewer.get("/review").text
    for _sid, title in site.intake.rules.outline.order:
        assert title in html  # every section of the outline, empty ones included
    # rows: p1, p2, p3, the form letter, c1 (its one item) and c2 (a different text) = 6
    assert len(row_numbers(html)) == 6
    form = group_of(site, "f1")
    assert members(site, form.id) == sorted(site.ids[f"f{i}"] for i in range(1, FORM_SENDERS + 1))
    row = re.search(rf'<a href="/review/rows/{form.id}">意見\d+-\d+</a>.*?</tr>', html, re.S)
    assert row and f"同旨{FORM_SENDERS}件" in row.group(0) and "形式 1号" in row.group(0)  # staff see names
    assert "ほか1者" in row.group(0) and "未着手" in row.group(0)
    assert HOSTILE not in html and "&lt;script&gt;" in html
    with site.intake.sessions() as session:
        assert session.scalars(select(ReviewEvent).where(ReviewEvent.action == "sync")).one().actor == "reviewer1"
    only = reviewer.get("/review?section=main-2").text
    assert row_numbers(only) and all(n.startswith(row_numbers(only)[0].split("-")[0]) for n in row_numbers(only))
    assert f'/review/rows/{form.id}"' in only and f'/review/rows/{group_of(site, "p1").id}"' not in only
    # the row page: every member's full comment with its record's link, the editor with the version
    page = reviewer.get(f"/review/rows/{form.id}").text
    assert page.count(FORM) == FORM_SENDERS
    for i in range(1, FORM_SENDERS + 1):
        assert f'href="/records/{site.ids[f"f{i}"]}"' in page
    assert f'name="version" value="{form.version}"' in page and page.count(">分ける<") == FORM_SENDERS


def test_a_viewer_reads_but_every_review_post_gets_403(viewer: TestClient, site: Site) -> None:
    assert viewer.get("/review").status_code == 200  # the sync runs, as the intake
    form = group_of(site, "f1")
    html = viewer.get(f"/review/rows/{form.id}").text
    assert "<textarea" not in html and ">分ける<" not in html  # viewers read
    token = csrf_of(html)
    before = event_count(site)
    posts = [(f"/review/rows/{form.id}/answer", {"answer": "閲覧者の文", "state": "draft", "version": "0"}),
             (f"/review/rows/{form.id}/move", {"section": "other"}),
             (f"/review/rows/{form.id}/merge", {"other": str(group_of(site, "p1").id)}),
             (f"/review/items/{item_id(site, 'f2')}/split", {}),
             (f"/records/{site.ids['c1']}/supersede", {"later": str(site.ids["c2"]), "note": "x"}),
             (f"/records/{site.ids['c1']}/restore", {"note": "x"})]
    for path, data in posts:
        r = viewer.post(path, data={**data, "csrf_token": token})
        assert r.status_code == 403 and "権限がありません" in r.text, path
    assert event_count(site) == before
    after = group_of(site, "f1")
    assert (after.answer, after.section, after.version) == ("", form.section, form.version)


def test_a_post_without_the_csrf_token_gets_403(reviewer: TestClient, site: Site) -> None:
    reviewer.get("/review")
    gid = group_of(site, "f1").id
    before = event_count(site)
    for path, data in ((f"/review/rows/{gid}/answer", {"answer": "x", "state": "draft", "version": "0"}),
                       (f"/review/rows/{gid}/move", {"section": "other"}),
                       (f"/review/rows/{gid}/merge", {"other": str(group_of(site, "p1").id)}),
                       (f"/review/items/{item_id(site, 'f2')}/split", {}),
                       (f"/records/{site.ids['c1']}/supersede", {"later": str(site.ids["c2"])}),
                       (f"/records/{site.ids['c1']}/restore", {})):
        assert reviewer.post(path, data=data).status_code == 403, path
        assert reviewer.post(path, data={**data, "csrf_token": "forged"}).status_code == 403, path
    assert event_count(site) == before


def test_a_stale_answer_save_is_refused_with_both_texts_shown_and_the_stored_one_kept(
        reviewer: TestClient, site: Site) -> None:
    reviewer.get("/review")
    gid = group_of(site, "f1").id
    with signed_in(site.app, "reviewer2") as second:
        first_form, second_form = reviewer.get(f"/review/rows/{gid}").text, second.get(f"/review/rows/{gid}").text
        version = re.search(r'name="version" value="(\d+)"', second_form)
        assert version
        mine = "中小企業への支援は第3章で扱います。"
        r = reviewer.post(f"/review/rows/{gid}/answer", follow_redirects=False, data={
            "answer": mine, "revised": "有", "state": "final", "version": version.group(1),
            "csrf_token": csrf_of(first_form)})
        assert r.status_code == 303 and r.headers["location"] == f"/review/rows/{gid}"
        assert "考え方を保存しました" in reviewer.get(r.headers["location"]).text
        theirs = "御意見として承ります。<b>太字</b>"
        r = second.post(f"/review/rows/{gid}/answer", data={
            "answer": theirs, "revised": "無", "state": "draft", "version": version.group(1),
            "csrf_token": csrf_of(second_form)})
        assert r.status_code == 409
        assert "この考え方はreviewer1が先に保存しました" in r.text
        stored = re.search(r'<div class="text current-answer">(.*?)</div>', r.text, re.S)
        assert stored and stored.group(1) == mine  # the current stored answer is shown …
        box = re.search(r'<textarea name="answer"[^>]*>(.*?)</textarea>', r.text, re.S)
        assert box and box.group(1) == "御意見として承ります。&lt;b&gt;太字&lt;/b&gt;"  # … and the user's text kept
        assert re.search(r'value="無" checked', r.text) and re.search(r'value="draft" checked', r.text)
        kept = group_of(site, "f1")
        assert (kept.answer, kept.revised, kept.state, kept.answered_by) == (mine, "有", "final", "reviewer1")
        # the refusal offers the current version: saving again, having seen it, is the user's choice
        assert f'name="version" value="{kept.version}"' in r.text
        r = second.post(f"/review/rows/{gid}/answer", follow_redirects=False, data={
            "answer": "二人目の考え方", "state": "final", "version": str(kept.version), "csrf_token": csrf_of(r.text)})
        assert r.status_code == 303
    page = reviewer.get(f"/review/rows/{gid}").text
    assert mine in page and "二人目の考え方" in page and "reviewer2" in page  # both saves in the history
    r = reviewer.post(f"/review/rows/{gid}/answer", data={"answer": "", "state": "final", "version": str(
        group_of(site, "f1").version), "csrf_token": csrf_of(page)})
    assert r.status_code == 409 and "確定にできません" in r.text


def test_move_merge_and_split_change_the_rows(reviewer: TestClient, site: Site) -> None:
    html = reviewer.get("/review").text
    p1, p2 = group_of(site, "p1"), group_of(site, "p2")
    token = csrf_of(html)
    r = reviewer.post(f"/review/rows/{p1.id}/move", data={"section": "annex", "csrf_token": token},
                      follow_redirects=False)
    assert r.status_code == 303 and group_of(site, "p1").section == "annex"
    assert "へ移動しました" in reviewer.get(r.headers["location"]).text
    r = reviewer.post(f"/review/rows/{p1.id}/move", data={"section": "nowhere", "csrf_token": token})
    assert r.status_code == 409 and "目次にありません" in r.text and group_of(site, "p1").section == "annex"
    # merge p2's row into p1's, by the number-to-be shown on 整理
    numbers = dict(re.findall(r'<a href="/review/rows/(\d+)">(意見\d+-\d+)</a>', reviewer.get("/review").text))
    r = reviewer.post(f"/review/rows/{p1.id}/merge", data={"other": numbers[str(p2.id)], "csrf_token": token},
                      follow_redirects=False)
    assert r.status_code == 303
    assert members(site, p1.id) == sorted([site.ids["p1"], site.ids["p2"]]) and members(site, p2.id) == []
    assert "同旨2件" in reviewer.get(f"/review/rows/{p1.id}").text
    gone = reviewer.get(f"/review/rows/{p2.id}", follow_redirects=False)  # the emptied row points to where it went
    assert gone.status_code == 303 and gone.headers["location"] == f"/review/rows/{p1.id}"
    r = reviewer.post(f"/review/rows/{p1.id}/merge", data={"other": str(p1.id), "csrf_token": token})
    assert r.status_code == 409 and "同じ行どうしはまとめられません" in r.text
    r = reviewer.post(f"/review/rows/{p1.id}/merge", data={"other": str(p2.id), "csrf_token": token})
    assert r.status_code == 409 and "まとめる意見がありません" in r.text
    # split p2's item out again: a row of its own, in the same section
    r = reviewer.post(f"/review/items/{item_id(site, 'p2')}/split", data={"csrf_token": token},
                      follow_redirects=False)
    assert r.status_code == 303 and r.headers["location"] == f"/review/rows/{p1.id}"
    new = group_of(site, "p2")
    assert new.id != p1.id and new.section == "annex" and members(site, p1.id) == [site.ids["p1"]]
    r = reviewer.post(f"/review/items/{item_id(site, 'p1')}/split", data={"csrf_token": token})
    assert r.status_code == 409 and "すでに単独の行です" in r.text
    history = reviewer.get(f"/review/rows/{p1.id}").text
    assert "へ移動" in history and "この行にまとめた" in history and "を分けて" in history


def test_supersede_and_restore_from_the_record_page(reviewer: TestClient, site: Site) -> None:
    reviewer.get("/review")
    c1, c2 = site.ids["c1"], site.ids["c2"]
    page = reviewer.get(f"/records/{c1}").text
    assert "差し替え（訂正版の再送）" in page
    r = reviewer.post(f"/records/{c1}/supersede", data={"later": "abc", "csrf_token": csrf_of(page)})
    assert r.status_code == 409 and "数字で入力" in r.text
    r = reviewer.post(f"/records/{c1}/supersede", data={"later": str(c1), "csrf_token": csrf_of(page)})
    assert r.status_code == 409 and "差し替えにできません" in r.text
    before = len(row_numbers(reviewer.get("/review").text))
    r = reviewer.post(f"/records/{c1}/supersede", follow_redirects=False,
                      data={"later": str(c2), "note": "訂正版の再送", "csrf_token": csrf_of(page)})
    assert r.status_code == 303
    page = reviewer.get(r.headers["location"]).text
    assert f"受付番号 {c2}</a> によって差し替えられています" in page and "差し替え" in page
    with site.intake.sessions() as session:
        sup = session.get(Supersession, c1)
        assert sup is not None and (sup.replaced_by, sup.actor, sup.note) == (c2, "reviewer1", "訂正版の再送")
    assert len(row_numbers(reviewer.get("/review").text)) == before - 1  # c1's row leaves the table
    assert f"受付番号 {c1}</a> を差し替えています" in reviewer.get(f"/records/{c2}").text
    r = reviewer.post(f"/records/{c2}/supersede", data={"later": str(c1), "csrf_token": csrf_of(page)})
    assert r.status_code == 409 and "差し替えられた記録" in r.text
    r = reviewer.post(f"/records/{c1}/restore", data={"note": "誤操作", "csrf_token": csrf_of(page)},
                      follow_redirects=False)
    assert r.status_code == 303 and len(row_numbers(reviewer.get("/review").text)) == before
    with site.intake.sessions() as session:
        assert session.get(Supersession, c1) is None


def progress_cells(html: str, section: str) -> list[int]:
    row = re.search(rf'data-section="{section}">(.*?)</tr>', html, re.S)
    assert row, html[:2000]
    return [int(x) for x in re.findall(r'<td class="num[^"]*">(\d+)</td>', row.group(1))]


def test_progress_counts_rows_and_items_per_state(reviewer: TestClient, site: Site) -> None:
    html = reviewer.get("/progress").text
    # total: 6 rows, all 未着手; items 3 + 4 + 1 + 1 = 9
    assert progress_cells(html, "total") == [6, 0, 0, 6, 9, 0, 0, 9]
    assert "計8者（9件）（意見提出順、敬称略）" in html  # 3 individuals + 4 form + コレクト once; 9 items
    gid = group_of(site, "f1").id
    page = reviewer.get(f"/review/rows/{gid}").text
    reviewer.post(f"/review/rows/{gid}/answer", data={"answer": "承ります。", "state": "final", "revised": "無",
                                                      "version": "0", "csrf_token": csrf_of(page)})
    p1 = group_of(site, "p1").id
    reviewer.post(f"/review/rows/{p1}/answer", data={"answer": "検討します。", "state": "draft",
                                                     "version": "0", "csrf_token": csrf_of(page)})
    html = reviewer.get("/progress").text
    assert progress_cells(html, "total") == [4, 1, 1, 6, 4, 1, 4, 9]
    # main-2 holds p2 (未着手) and the form letter (確定)
    assert progress_cells(html, "main-2") == [1, 0, 1, 2, 1, 0, FORM_SENDERS, FORM_SENDERS + 1]
    assert "形式" not in html and "個人 一号" not in html and "@example.jp" not in html  # no personal data


def test_the_result_document_downloads_for_anyone_signed_in(reviewer: TestClient, viewer: TestClient,
                                                             site: Site) -> None:
    reviewer.get("/review")
    gid = group_of(site, "f1").id
    page = reviewer.get(f"/review/rows/{gid}").text
    reviewer.post(f"/review/rows/{gid}/answer", data={"answer": "第3章に支援策を追記します。", "state": "final",
                                                      "revised": "有", "version": "0", "csrf_token": csrf_of(page)})
    exports = viewer.get("/exports").text
    assert 'href="/exports/result.docx"' in exports
    # the page's title is its name, not a piece of the page (the result section once sat in the title block)
    assert re.search(r"<title>([^<]*)</title>", exports).group(1) == "出力 | 意見受付"  # type: ignore[union-attr]
    assert exports.count("結果の公示資料") == 1
    r = viewer.get("/exports/result.docx")
    assert r.status_code == 200 and r.content[:2] == b"PK"
    cd = r.headers["content-disposition"]
    assert unquote(cd.split("filename*=UTF-8''")[1]).startswith("提出された意見及び考え方_")
    doc = Document(io.BytesIO(r.content))
    text = "\n".join([p.text for p in doc.paragraphs]
                     + [c.text for t in doc.tables for row in t.rows for c in row.cells])
    assert "第3章に支援策を追記します。" in text and f"（同旨{FORM_SENDERS}件）" in text
    assert "計8者（9件）" in text and "形式 1号" not in text and "個人 一号" not in text
    x = viewer.get("/exports/result.xlsx")
    assert x.status_code == 200 and x.content[:2] == b"PK" and x.headers["content-type"].startswith(
        "application/vnd.openxmlformats-officedocument.spreadsheetml")
    assert viewer.get("/exports/result.pdf").status_code == 404
    with site.intake.sessions() as session:  # the viewer's download synced nothing new and changed nothing
        assert session.get(ReviewGroup, gid).answer == "第3章に支援策を追記します。"  # type: ignore[union-attr]
    assert rv.SYSTEM == "intake"
