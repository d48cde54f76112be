"""The web application in a real browser: Debian's Chromium driven by Playwright (async API, so it shares
pytest-asyncio's loop), against `intake web` running as its own process on the demo's mails (samples/, the
EICAR mail) plus a few of our own, on SQLite and PostgreSQL. Each test saves a screenshot of the page it
checks in var/screenshots/ (gitignored) for a person to look at; dashboard.png and record.png are the
README's pictures."""

from __future__ import annotations

import email
import email.policy
import os
import re
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from daemon.config import PACKAGE_ROOT
from daemon.model import Arrival
from daemon.pipeline import Intake
from daemon.staff import accounts
from daemon.store import users as _users  # noqa: F401  (the users table is in the metadata the tests truncate)
from devkit.demo import eicar_mail

from mails import mail

playwright_api = pytest.importorskip("playwright.async_api")
CHROMIUM = Path("/usr/bin/chromium")
pytestmark = pytest.mark.skipif(not CHROMIUM.exists(), reason="chromium is not installed (scripts/setup installs it)")

SHOTS = PACKAGE_ROOT / "var" / "screenshots"
PASSWORD = "correct horse battery"
HOSTILE = "<script>alert(1)</script>"


@dataclass
class Site:
    url: str
    ids: dict[str, int]
    raws: dict[str, bytes]
    backend: str


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _wait_until_up(url: str, proc: subprocess.Popen[bytes], limit: float = 60) -> None:
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"intake web exited with {proc.returncode}")
        try:
            with urllib.request.urlopen(url + "/healthz", timeout=2) as r:
                if r.status == 200:
                    return
        except OSError:
            time.sleep(0.1)  # polling a condition: the port is not open yet
    raise AssertionError("intake web did not answer /healthz in time")


@pytest.fixture
def site(intake: Intake, tmp_path: Path, db_url: str) -> Iterator[Site]:
    ids: dict[str, int] = {}
    raws: dict[str, bytes] = {}

    def add(key: str, raw: bytes) -> None:
        raws[key] = raw
        ids[key] = intake.process(Arrival(raw=raw, source="ingest")).id

    for path in sorted((PACKAGE_ROOT / "samples").glob("*.eml")):
        add(path.stem, path.read_bytes())
    add("eicar", eicar_mail())
    add("ai1", mail(body="本編 P.12 について。生成AIの出力を検証する仕組みが必要である。", sender="ai1@example.jp",
                    subject="ガイドライン案への意見"))
    add("ai2", mail(body="別添 P.3 について。生成ＡＩの学習データの扱いを明記すべき。", sender="ai2@example.jp"))
    add("plain", mail(body="本編 P.5 について。用語集を付けてほしい。", sender="c@example.jp"))
    add("hostile", mail(body="本編 P.1 について。", subject=HOSTILE, sender="h@example.jp",
                        attachments=[(HOSTILE + ".txt", "本編 P.1 についての意見".encode(), "text/plain")]))
    with intake.sessions.begin() as session:
        accounts.add(session, "reviewer1", "reviewer", PASSWORD)
        accounts.add(session, "viewer1", "viewer", PASSWORD)
        accounts.add(session, "locked1", "viewer", PASSWORD)
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
        yield Site(url, ids, raws, "sqlite" if db_url.startswith("sqlite") else "postgres")
    finally:
        proc.terminate()
        proc.wait(30)


@asynccontextmanager
async def browser() -> AsyncIterator[Any]:
    async with playwright_api.async_playwright() as p:
        b = await p.chromium.launch(executable_path=str(CHROMIUM), args=["--no-sandbox"])
        try:
            context = await b.new_context(viewport={"width": 1366, "height": 768}, locale="ja-JP",
                                          accept_downloads=True)
            yield await context.new_page()
        finally:
            await b.close()


async def shot(page: Any, site: Site, name: str) -> None:
    SHOTS.mkdir(parents=True, exist_ok=True)
    await page.screenshot(path=str(SHOTS / f"{name}-{site.backend}.png"), full_page=True)


async def sign_in(page: Any, site: Site, name: str, password: str = PASSWORD) -> None:
    await page.goto(site.url + "/login")
    await page.fill("input[name=name]", name)
    await page.fill("input[name=password]", password)
    await page.click("button[type=submit]")


async def test_sign_in_shows_the_dashboard(site: Site) -> None:
    async with browser() as page:
        await page.goto(site.url + "/records")
        assert page.url == site.url + "/login"  # every page needs a sign-in
        await sign_in(page, site, "reviewer1")
        assert page.url == site.url + "/"
        body = await page.inner_text("main")
        assert "ダッシュボード" in body and re.search(r"\d+者（個人\d+者、法人・団体\d+者）から延べ\d+件", body)
        assert "reviewer1（審査担当）" in await page.inner_text("header")
        await shot(page, site, "dashboard")


async def test_a_wrong_password_and_then_the_lockout(site: Site) -> None:
    async with browser() as page:
        await sign_in(page, site, "locked1", "not the password")
        assert "ユーザー名またはパスワードが違います" in await page.inner_text(".error")
        for _ in range(accounts.LOCK_AFTER - 1):
            await sign_in(page, site, "locked1", "not the password")
        await sign_in(page, site, "locked1")  # the right password, but locked now
        assert page.url == site.url + "/login"
        assert "しばらくログインできません" in await page.inner_text(".error")
        await shot(page, site, "lockout")


async def test_search_finds_the_right_records(site: Site) -> None:
    async with browser() as page:
        await sign_in(page, site, "viewer1")
        await page.goto(site.url + "/records")
        await page.fill("input[name=q]", "生成AI")
        await page.click("form.filters button[type=submit]")
        assert page.url == site.url + "/records"  # the words never reach the URL
        found = {int(x) for x in await page.locator("table.records tbody td.num a").all_inner_texts()}
        assert found == {site.ids["ai1"], site.ids["ai2"]}
        assert (await page.inner_text("p.total")).startswith("2 件")
        await shot(page, site, "search")


async def test_open_a_record_and_read_its_comment_items(site: Site) -> None:
    async with browser() as page:
        await sign_in(page, site, "reviewer1")
        await page.goto(f"{site.url}/records/{site.ids['02-word-ikensho']}")
        items = page.locator("article.item")
        assert await items.count() >= 1
        first = await items.first.inner_text()
        assert "該当箇所" in first and "意見・理由" in first
        text = await page.inner_text("main")
        assert text.index("意見（") < text.index("提出者") < text.index("添付ファイル") < text.index("履歴")
        await shot(page, site, "record")


def _attachment(raw: bytes, position: int = 1) -> tuple[str, bytes]:
    msg = email.message_from_bytes(raw, policy=email.policy.default)
    parts = [p for p in msg.walk() if p.get_filename()]
    part = parts[position - 1]
    data = part.get_payload(decode=True)
    assert isinstance(data, bytes)
    return str(part.get_filename()), data


async def test_download_an_attachment_and_compare_its_bytes_with_the_raw_mail(site: Site, tmp_path: Path) -> None:
    name, data = _attachment(site.raws["02-word-ikensho"])
    async with browser() as page:
        await sign_in(page, site, "viewer1")
        await page.goto(f"{site.url}/records/{site.ids['02-word-ikensho']}")
        async with page.expect_download() as info:
            await page.click("text=ダウンロード >> nth=0")
        download = await info.value
        assert download.suggested_filename == name  # the Japanese name, from filename*
        target = tmp_path / "got"
        await download.save_as(target)
        assert target.read_bytes() == data
        await shot(page, site, "download")


async def test_a_reviewer_releases_a_rejected_mail_and_the_event_shows_the_user(site: Site) -> None:
    rid = site.ids["04-pdf-not-allowed"]
    async with browser() as page:
        await sign_in(page, site, "reviewer1")
        await page.goto(f"{site.url}/records/{rid}")
        await page.click("a.button:has-text('受付にする')")
        await page.fill("textarea[name=note]", "PDFの内容を確認し、受け付けることにした")
        await page.click("button:has-text('確認へ進む')")
        assert "本当に「受付にする」を行いますか" in await page.inner_text("main")
        await page.click("button:has-text('はい、受付にする')")
        assert page.url.startswith(f"{site.url}/records/{rid}")
        assert "受付不可 → 受付済" in await page.inner_text(".flash")
        last = page.locator("#history ~ table tr").last
        assert "reviewer1" in await last.inner_text() and "受付にする" in await last.inner_text()
        await shot(page, site, "release")


async def _csrf(page: Any) -> str:
    return str(await page.get_attribute("input[name=csrf_token] >> nth=0", "value"))


async def test_a_viewers_post_of_a_decision_gets_403(site: Site) -> None:
    rid = site.ids["plain"]
    async with browser() as page:
        await sign_in(page, site, "viewer1")
        await page.goto(f"{site.url}/records/{rid}")
        assert await page.locator("a.button").count() == 0  # no decision buttons for a viewer
        r = await page.request.post(f"{site.url}/records/{rid}/decide/reject",
                                    form={"note": "spam", "confirm": "yes", "csrf_token": await _csrf(page)})
        assert r.status == 403
        await page.goto(f"{site.url}/records/{rid}")
        assert "受付済" in await page.inner_text("h1")
        await page.goto(f"{site.url}/records/{rid}/decide/reject")
        assert "権限がありません" in await page.inner_text("main")
        await shot(page, site, "viewer-403")


async def test_a_post_without_a_csrf_token_gets_403(site: Site) -> None:
    rid = site.ids["plain"]
    async with browser() as page:
        await sign_in(page, site, "reviewer1")
        r = await page.request.post(f"{site.url}/records/{rid}/decide/reject", form={"note": "x", "confirm": "yes"})
        assert r.status == 403
        await page.set_content(await r.text())
        await shot(page, site, "csrf-403")
        await page.goto(f"{site.url}/records/{rid}")
        assert "受付済" in await page.inner_text("h1")


async def test_a_script_in_subject_and_file_name_renders_as_text(site: Site) -> None:
    dialogs: list[str] = []
    async with browser() as page:
        page.on("dialog", lambda d: dialogs.append(d.message))
        await sign_in(page, site, "reviewer1")
        await page.goto(site.url + "/records")
        assert HOSTILE in await page.inner_text("table.records")
        await page.goto(f"{site.url}/records/{site.ids['hostile']}")
        assert HOSTILE in await page.inner_text(".subject")
        assert HOSTILE + ".txt" in await page.inner_text("td.filename")
        assert await page.locator("main script").count() == 0
        await shot(page, site, "hostile")
    assert dialogs == []


async def test_a_quarantined_attachment_cannot_be_downloaded(site: Site) -> None:
    rid = site.ids["eicar"]
    async with browser() as page:
        await sign_in(page, site, "reviewer1")
        await page.goto(f"{site.url}/records/{rid}")
        assert "隔離" in await page.inner_text("h1")
        assert "ダウンロード不可" in await page.inner_text("table")
        assert await page.locator("a[href*='/attachments/']").count() == 0
        assert await page.locator("a[href$='/raw']").count() == 0
        for path in (f"/records/{rid}/attachments/1", f"/records/{rid}/raw"):
            r = await page.request.get(site.url + path)
            assert r.status == 403 and b"EICAR" not in await r.body()
        await shot(page, site, "quarantined")
