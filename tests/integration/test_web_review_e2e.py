"""From the intake log to the result document in a real browser (Debian's Chromium driven by Playwright), against
`intake web` running as its own process, on SQLite and PostgreSQL, started and signed into exactly as
test_web_e2e.py does: a reviewer goes from the dashboard to 受付一覧 and 整理, answers the form letter's row
(修正 有, 確定) while a second reviewer, who opened the same row before, is refused with the current text;
merges two rows, splits one, supersedes a record by its corrected resend from the record page; reads 進捗; and
downloads the result document from 出力, which LibreOffice prints and poppler reads back.

Screenshots go to var/screenshots/review-*.png (gitignored); the row page is also docs/web/review.png, the
README's picture (from the SQLite run)."""

from __future__ import annotations

import datetime as dt
import os
import re
import subprocess
import sys
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import render
from test_web_e2e import CHROMIUM, PASSWORD, SHOTS, _free_port, _wait_until_up

from daemon.config import PACKAGE_ROOT
from daemon.model import Arrival
from daemon.pipeline import Intake
from daemon.staff import accounts
from daemon.store import users as _users  # noqa: F401  (the users table is in the metadata the tests truncate)
from devkit.ikensho import ikensho_docx

from mails import mail

playwright_api = pytest.importorskip("playwright.async_api")
pytestmark = [pytest.mark.skipif(not CHROMIUM.exists(), reason="chromium is not installed (scripts/setup installs it)"),
              pytest.mark.skipif(not render.available(), reason="LibreOffice and poppler-utils are needed")]

DOCS = PACKAGE_ROOT / "docs" / "web"
JST = dt.timezone(dt.timedelta(hours=9))
FORM = "本編 P.12 について、中小企業への支援策を拡充すべきである。特に、AIの安全性評価に要する費用の補助を求める。"
FORM_SENDERS = 3
ANSWER = "御意見を踏まえ、第2章に中小企業向けの支援策を追記します。"
LATE_ANSWER = "御意見として承ります。"


@dataclass
class Site:
    url: str
    ids: dict[str, int]
    backend: str


def at(day: int, hour: int) -> dt.datetime:
    return dt.datetime(2026, 1, day, hour, 0, tzinfo=JST)


def person(name: str, n: int, body: str) -> str:
    return f"氏名：{name}\n住所：東京都千代田区霞が関{n}-1-1\n電話番号：03-{3000 + n}-{1000 + n}\n\n{body}\n"


@pytest.fixture
def site(intake: Intake, tmp_path: Path, db_url: str) -> Iterator[Site]:
    ids: dict[str, int] = {}

    def add(key: str, raw: bytes, when: dt.datetime) -> None:
        ids[key] = intake.process(Arrival(raw=raw, source="ingest", received_at=when, received_source="argument")).id

    for n, (key, body) in enumerate((("p1", "本編 P.3 について、「AIシステム」の定義を明確にすべきである。"),
                                     ("p2", "本編 P.4 について、対象となる事業者の範囲を明確にすべきである。"),
                                     ("p3", "ガイドライン全体として、分かりやすい概要版を作成してほしい。")), 1):
        add(key, mail(body=person(f"個人 {n}号", n, body), sender=f"{key}@example.jp", received=at(5, 8 + n)),
            at(5, 8 + n))
    for i in range(1, FORM_SENDERS + 1):
        add(f"f{i}", mail(body=person(f"形式 {i}号", 100 + i, FORM), sender=f"f{i}@example.jp", received=at(6, 8 + i)),
            at(6, 8 + i))
    fields = [("名称", "株式会社コレクト"), ("代表者氏名", "代表取締役 正木 直"), ("所在地", "大阪府大阪市北区1-1")]
    for key, text, when in (("c1", "モデルの評価は年1回実施すべきである。", at(7, 10)),
                            ("c2", "モデルの評価は少なくとも半年に1回実施すべきである。", at(8, 10))):
        doc = ikensho_docx(fields, [("本編 P.33", text, "変化が速いため。")])
        add(key, mail(body="意見書を提出します。" + ("（訂正版）" if key == "c2" else ""), subject="意見" + key,
                      sender="info@collect.example.jp", received=when,
                      attachments=[("意見書.docx", doc, "application/octet-stream")]), when)
    with intake.sessions.begin() as session:
        accounts.add(session, "reviewer1", "reviewer", PASSWORD)
        accounts.add(session, "reviewer2", "reviewer", PASSWORD)
    port = _free_port()
    conf = tmp_path / "web.toml"
    conf.write_text("\n".join([
        "[intake]", f'data_dir = "{intake.config.data_dir}"', f'database_url = "{db_url}"',
        f'rules = "{intake.config.rules_path}"', "[scan]", f'clamd = "{intake.config.scan.clamd}"',
        "[web]", f"port = {port}", "cookie_secure = false", ""]), encoding="utf-8")
    env = {k: v for k, v in os.environ.items() if not k.startswith("INTAKE_")}
    proc = subprocess.Popen([sys.executable, "-m", "daemon.cli", "--config", str(conf), "web"], env=env)
    url = f"http://127.0.0.1:{port}"
    try:
        _wait_until_up(url, proc)
        yield Site(url, ids, "sqlite" if db_url.startswith("sqlite") else "postgres")
    finally:
        proc.terminate()
        proc.wait(30)


@asynccontextmanager
async def chromium() -> AsyncIterator[Any]:
    """One browser; each user gets a context of their own (their own cookies), as two people at two desks."""
    async with playwright_api.async_playwright() as p:
        b = await p.chromium.launch(executable_path=str(CHROMIUM), args=["--no-sandbox"])
        try:
            yield b
        finally:
            await b.close()


async def desk(b: Any) -> Any:
    context = await b.new_context(viewport={"width": 1366, "height": 768}, locale="ja-JP", accept_downloads=True)
    return await context.new_page()


async def shot(page: Any, site: Site, name: str) -> Path:
    SHOTS.mkdir(parents=True, exist_ok=True)
    path = SHOTS / f"{name}-{site.backend}.png"
    await page.screenshot(path=str(path), full_page=True)
    return path


async def sign_in(page: Any, site: Site, name: str) -> None:
    await page.goto(site.url + "/login")
    await page.fill("input[name=name]", name)
    await page.fill("input[name=password]", PASSWORD)
    await page.click("button[type=submit]")
    assert page.url == site.url + "/"


async def row_link(page: Any, text: str) -> Any:
    """The link (番号) of the 整理 row whose text cell holds `text`."""
    return page.locator("table.review tr", has_text=text).locator("td >> nth=0").locator("a")


async def test_from_the_intake_log_to_the_result_document(site: Site, tmp_path: Path) -> None:
    ids = site.ids
    async with chromium() as b:
        page = await desk(b)
        await sign_in(page, site, "reviewer1")
        await page.click("header nav >> text=受付一覧")
        assert page.url == site.url + "/records"
        assert (await page.inner_text("p.total")).startswith(f"{len(ids)} 件")
        await page.click("header nav >> text=整理")
        assert page.url == site.url + "/review"
        listing = await page.inner_text("main")
        assert "計7者（8件）（意見提出順、敬称略）" in listing  # c1 and c2 both count until one replaces the other
        form_row = page.locator("table.review tr", has_text=f"同旨{FORM_SENDERS}件")
        assert await form_row.count() == 1 and "未着手" in await form_row.inner_text()
        await shot(page, site, "review-list")

        # the form letter's row; a second reviewer opens it too, before the first one saves
        await form_row.locator("a >> nth=0").click()
        row_url = page.url
        assert re.fullmatch(re.escape(site.url) + r"/review/rows/\d+", row_url)
        assert await page.locator("article.member").count() == FORM_SENDERS
        other = await desk(b)
        await sign_in(other, site, "reviewer2")
        await other.goto(row_url)

        await page.fill("textarea[name=answer]", ANSWER)
        await page.check("input[name=revised][value='有']")
        await page.check("input[name=state][value=final]")
        await page.click("form.answer button[type=submit]")
        assert page.url == row_url and "考え方を保存しました" in await page.inner_text(".flash")
        assert "確定" in await page.inner_text("h1") and ANSWER in await page.inner_text("table.history")
        await shot(page, site, "review-row")
        if site.backend == "sqlite":
            DOCS.mkdir(parents=True, exist_ok=True)
            await page.screenshot(path=str(DOCS / "review.png"), full_page=True)

        await other.fill("textarea[name=answer]", LATE_ANSWER)
        await other.check("input[name=state][value=draft]")
        await other.click("form.answer button[type=submit]")
        assert "この考え方はreviewer1が先に保存しました" in await other.inner_text(".error")
        assert await other.inner_text(".stored .current-answer") == ANSWER  # what is stored now …
        assert await other.input_value("textarea[name=answer]") == LATE_ANSWER  # … and nothing typed is lost
        await shot(other, site, "review-refusal")
        await page.reload()
        assert await page.input_value("textarea[name=answer]") == ANSWER  # the stored answer was not overwritten

        # merge p2's row into p1's by the number shown on 整理, then split it out again
        await page.click("header nav >> text=整理")
        p2_number = await (await row_link(page, "対象となる事業者の範囲")).inner_text()
        await (await row_link(page, "「AIシステム」の定義")).click()
        p1_url = page.url
        await page.fill("input[name=other]", p2_number)
        await page.click("button:has-text('まとめる')")
        assert page.url == p1_url and "まとめました" in await page.inner_text(".flash")
        assert "同旨2件" in await page.inner_text("h1") and await page.locator("article.member").count() == 2
        await page.locator("article.member", has_text="対象となる事業者の範囲").locator("button").click()
        assert page.url == p1_url and "新しい行" in await page.inner_text(".flash")
        assert await page.locator("article.member").count() == 1 and "同旨" not in await page.inner_text("h1")
        await shot(page, site, "review-split")

        # the company's corrected resend replaces its first mail, from the first mail's record page
        await page.goto(f"{site.url}/records/{ids['c1']}")
        await page.fill("form.supersede input[name=later]", str(ids["c2"]))
        await page.fill("form.supersede input[name=note]", "訂正版の再送")
        await page.click("form.supersede button[type=submit]")
        assert f"受付番号 {ids['c2']} によって差し替えられています" in await page.inner_text(".superseded")
        assert "差し替え" in await page.inner_text("#history ~ table")
        await shot(page, site, "review-supersede")

        await page.click("header nav >> text=進捗")
        assert page.url == site.url + "/progress"
        total = [int(x) for x in await page.locator("tr[data-section=total] td.num").all_inner_texts()]
        # rows: p1, p2, p3, the form letter, c2 (c1 left) = 5, one of them 確定; items 3 + 3 + 1 = 7
        assert total == [4, 0, 1, 5, 4, 0, FORM_SENDERS, 7]
        assert "計7者（7件）（意見提出順、敬称略）" in await page.inner_text("main")
        await shot(page, site, "review-progress")

        await page.click("header nav >> text=出力")
        assert await page.title() == "出力 | 意見受付"
        await shot(page, site, "review-exports")
        async with page.expect_download() as info:
            await page.click("a[href='/exports/result.docx']")
        download = await info.value
        assert download.suggested_filename.startswith("提出された意見及び考え方_")
        docx = tmp_path / "result.docx"
        await download.save_as(docx)
    pdf = render.to_pdf(docx)
    render.save_pages(pdf, f"review-e2e-result-{site.backend}")
    flat = render.squeeze(render.pdf_text(pdf))
    assert f"（同旨{FORM_SENDERS}件）" in flat
    # the answer as its column reads (-layout puts the columns side by side on one line, so read it alone)
    answers = render.squeeze("".join(render.column_texts(pdf, "意見に対する考え方", "修正の有無")))
    assert render.squeeze(ANSWER) in answers and LATE_ANSWER not in answers
    assert "有" in "".join(render.column_texts(pdf, "修正の有無", None))
    assert render.squeeze("計7者（7件）") in flat
    assert "年1回実施" not in flat and render.squeeze("少なくとも半年に1回") in flat  # the resend, not the first
    for private in ("形式1号", "f1@example.jp", "霞が関101"):
        assert private not in flat
