"""The staff's web application over HTTP (Starlette's TestClient, the real app, real clamd, SQLite and
PostgreSQL): sign-in, lockout, sessions, CSRF, roles, 受付一覧 and its search, 受付詳細 and its downloads,
decisions, exports, escaping and the security headers. The browser tests are in test_web_e2e.py."""

from __future__ import annotations

import dataclasses
import email
import email.policy
import re
import subprocess
import sys
from collections.abc import Iterator
from typing import Any
from urllib.parse import unquote

import pytest
from starlette.testclient import TestClient
from web_client import PASSWORD, csrf_of, signed_in

from daemon.model import Arrival
from daemon.pipeline import Intake
from daemon.staff import accounts
from daemon.store import records
from daemon.store import users as _users  # noqa: F401  (the users table is in the metadata the tests truncate)
from daemon.web.app import create_app
from daemon.web.settings import WebSettings
from devkit.clamd import eicar
from devkit.ikensho import ikensho_docx

from mails import mail

HOSTILE = "<script>alert(1)</script>"


def ingest(intake: Intake, raw: bytes) -> int:
    return intake.process(Arrival(raw=raw, source="ingest")).id


@pytest.fixture
def app(intake: Intake) -> Any:
    with intake.sessions.begin() as session:
        for name, role in (("viewer1", "viewer"), ("reviewer1", "reviewer"), ("admin1", "admin")):
            accounts.add(session, name, role, PASSWORD)
    settings = dataclasses.replace(WebSettings.from_config(intake.config), cookie_secure=False)
    return create_app(intake.config, intake.rules, settings, intake.sessions)


@pytest.fixture
def reviewer(app: Any) -> Iterator[TestClient]:
    with signed_in(app, "reviewer1") as client:
        yield client


@pytest.fixture
def viewer(app: Any) -> Iterator[TestClient]:
    with signed_in(app, "viewer1") as client:
        yield client


def post(client: TestClient, path: str, data: dict[str, str], page: str | None = None, **kw: Any) -> Any:
    token = csrf_of(client.get(page or path).text)
    return client.post(path, data={**data, "csrf_token": token}, **kw)


def total(html: str) -> int:
    found = re.search(r'<p class="total">(\d+) 件', html)
    assert found, html[:2000]
    return int(found.group(1))


def ids_on(html: str) -> list[int]:
    return [int(x) for x in re.findall(r'<td class="num"><a href="/records/(\d+)">', html)]


# -- sign-in, lockout, sessions ---------------------------------------------------------------------
def test_every_page_needs_a_sign_in_and_a_wrong_password_says_so(app: Any) -> None:
    client = TestClient(app)
    for path in ("/", "/records", "/records/1", "/exports", "/records/1/raw", "/exports/internal.csv"):
        r = client.get(path, follow_redirects=False)
        assert r.status_code == 303 and r.headers["location"] == "/login", path
    token = csrf_of(client.get("/login").text)
    r = client.post("/login", data={"name": "reviewer1", "password": "wrong password!", "csrf_token": token})
    assert r.status_code == 401 and "ユーザー名またはパスワードが違います" in r.text
    r = client.post("/login", data={"name": "nobody", "password": PASSWORD, "csrf_token": token})
    assert r.status_code == 401 and "ユーザー名またはパスワードが違います" in r.text  # same words: no name oracle


def test_lockout_after_repeated_failures_refuses_even_the_right_password(app: Any, intake: Intake) -> None:
    client = TestClient(app)
    token = csrf_of(client.get("/login").text)
    for _ in range(accounts.LOCK_AFTER):
        r = client.post("/login", data={"name": "viewer1", "password": "guess guess guess", "csrf_token": token})
        assert r.status_code == 401
    assert "しばらくログインできません" in r.text
    r = client.post("/login", data={"name": "viewer1", "password": PASSWORD, "csrf_token": token})
    assert r.status_code == 401 and "しばらくログインできません" in r.text
    with intake.sessions() as session:
        user = accounts.find(session, "viewer1")
        assert user is not None and user.failed_logins == accounts.LOCK_AFTER and user.locked_until is not None
    # The back-off doubles, capped.
    assert accounts.lock_for(accounts.LOCK_AFTER - 1).total_seconds() == 0
    assert accounts.lock_for(accounts.LOCK_AFTER + 1) == 2 * accounts.lock_for(accounts.LOCK_AFTER)
    assert accounts.lock_for(100) == accounts.LOCK_MAX
    # An admin's `intake users enable` clears it.
    with intake.sessions.begin() as session:
        accounts.set_disabled(session, "viewer1", False)
    signed_in(app, "viewer1")


def test_session_cookie_is_signed_httponly_and_secure_when_configured(intake: Intake) -> None:
    with intake.sessions.begin() as session:
        accounts.add(session, "secure1", "viewer", PASSWORD)
    app = create_app(intake.config, intake.rules, WebSettings.from_config(intake.config), intake.sessions)
    client = TestClient(app, base_url="https://testserver")
    r = client.get("/login")
    cookie = r.headers["set-cookie"].lower()
    assert "httponly" in cookie and "secure" in cookie and "samesite=lax" in cookie


def test_idle_timeout_and_a_password_change_end_the_session(app: Any, intake: Intake) -> None:
    client = signed_in(app, "viewer1")
    assert client.get("/records").status_code == 200
    ctx = app.state.ctx
    real = ctx.clock
    ctx.clock = lambda: real() + ctx.settings.idle_minutes * 60 + 5  # the clock, moved past the idle timeout
    r = client.get("/records", follow_redirects=False)
    assert r.status_code == 303 and r.headers["location"] == "/login"
    assert "一定時間操作がなかったため" in client.get("/login").text
    ctx.clock = real
    client = signed_in(app, "viewer1")
    with intake.sessions.begin() as session:
        accounts.set_password(session, "viewer1", "another long password")
    assert client.get("/records", follow_redirects=False).status_code == 303
    with intake.sessions.begin() as session:
        accounts.set_password(session, "viewer1", PASSWORD)
        accounts.set_disabled(session, "viewer1", True)
    client = TestClient(app)
    token = csrf_of(client.get("/login").text)
    r = client.post("/login", data={"name": "viewer1", "password": PASSWORD, "csrf_token": token})
    assert r.status_code == 401


def test_a_post_without_the_csrf_token_is_refused(reviewer: TestClient, intake: Intake) -> None:
    rid = ingest(intake, mail(body="本編 P.1 について意見。"))
    for path, data in (("/records", {"q": "意見"}), (f"/records/{rid}/decide/reject", {"note": "x", "confirm": "yes"}),
                       ("/logout", {})):
        r = reviewer.post(path, data=data)
        assert r.status_code == 403, path
        r = reviewer.post(path, data={**data, "csrf_token": "forged"})
        assert r.status_code == 403, path
    assert records_status(intake, rid) == "accepted"


def records_status(intake: Intake, rid: int) -> str:
    with intake.sessions() as session:
        msg = records.load(session, rid)
        assert msg is not None
        return msg.status


def test_security_headers_on_every_answer(reviewer: TestClient) -> None:
    for path in ("/", "/records", "/login", "/static/style.css"):
        h = reviewer.get(path).headers
        assert "script-src 'none'" in h["content-security-policy"] and "frame-ancestors 'none'" in h[
            "content-security-policy"]
        assert h["x-frame-options"] == "DENY" and h["x-content-type-options"] == "nosniff"
    assert reviewer.get("/records").headers["cache-control"] == "no-store"
    assert "<script" not in reviewer.get("/").text  # no script at all, so CSP forbids them all


# -- 受付一覧 ------------------------------------------------------------------------------------------
def test_search_finds_the_records_with_every_word_and_filters_combine(reviewer: TestClient, intake: Intake) -> None:
    ai = ingest(intake, mail(body="本編 P.3 について。生成AIの安全性を確保すべきである。", sender="a@example.jp"))
    wide = ingest(intake, mail(body="別添 P.9 について。生成ＡＩの利用者への説明が必要である。", sender="b@example.jp"))
    other = ingest(intake, mail(body="本編 P.5 について。用語の定義を明確にすべき。", sender="c@example.jp"))
    subject = ingest(intake, mail(body="本編 P.6 について意見。", subject="生成AIガイドラインへの意見",
                                  sender="d@example.jp"))
    r = post(reviewer, "/records", {"q": "生成AI"}, page="/records")
    assert r.status_code == 200
    assert sorted(ids_on(r.text)) == sorted([ai, wide, subject]) and total(r.text) == 3
    r = post(reviewer, "/records", {"q": "生成AI　安全性"}, page="/records")  # a full-width space splits too
    assert ids_on(r.text) == [ai]
    r = post(reviewer, "/records", {"q": "生成AI", "target": "annex"}, page="/records")
    assert ids_on(r.text) == [wide]
    r = post(reviewer, "/records", {"q": "定義"}, page="/records")
    assert ids_on(r.text) == [other]
    r = post(reviewer, "/records", {"q": "存在しない語句"}, page="/records")
    assert total(r.text) == 0 and "該当する記録はありません" in r.text
    r = post(reviewer, "/records", {"reset": "1"}, page="/records")
    assert total(r.text) == 4


def test_the_log_pages_by_fifty_with_the_total_and_search_terms_stay_out_of_urls(
        reviewer: TestClient, intake: Intake) -> None:
    ids = [ingest(intake, mail(body=f"本編 P.{n} について意見その{n}。", sender=f"p{n}@example.jp"))
           for n in range(1, 56)]
    r = reviewer.get("/records")
    assert total(r.text) == 55 and ids_on(r.text) == sorted(ids, reverse=True)[:50] and "1 / 2 ページ" in r.text
    r = reviewer.get("/records?page=2")
    assert ids_on(r.text) == sorted(ids, reverse=True)[50:]
    r = reviewer.get("/records?order=asc")
    assert ids_on(r.text)[:3] == sorted(ids)[:3]
    r = post(reviewer, "/records", {"q": "その7", "status": "accepted"}, page="/records", follow_redirects=False)
    assert r.status_code == 303 and r.headers["location"] == "/records"  # the words are in the session, not the URL
    page = reviewer.get(r.headers["location"]).text
    assert ids_on(page) == [ids[6]]


def test_filters_by_status_reason_kind_and_date(reviewer: TestClient, intake: Intake) -> None:
    ok = ingest(intake, mail(body="氏名：山田 一郎\n住所：東京都\n\n本編 P.1 について。"))
    pdf = ingest(intake, mail(body="本編 P.2", attachments=[("a.pdf", b"%PDF-1.4\n%%EOF\n", "application/pdf")]))
    r = post(reviewer, "/records", {"status": "rejected"}, page="/records")
    assert ids_on(r.text) == [pdf]
    r = post(reviewer, "/records", {"reason": "attachment_not_allowed"}, page="/records")
    assert ids_on(r.text) == [pdf] and "対象外の添付形式" in r.text
    r = post(reviewer, "/records", {"kind": "individual"}, page="/records")
    assert ids_on(r.text) == [ok]
    r = post(reviewer, "/records", {"kind": "unknown"}, page="/records")
    assert ids_on(r.text) == [pdf]
    r = post(reviewer, "/records", {"since": "2026-01-10", "until": "2026-01-10"}, page="/records")
    assert set(ids_on(r.text)) == {ok, pdf}  # mails.IN_WINDOW is 2026-01-10 JST
    r = post(reviewer, "/records", {"since": "2026-01-11"}, page="/records")
    assert ids_on(r.text) == []


# -- 受付詳細 and downloads -----------------------------------------------------------------------------
def raw_part(raw: bytes, filename: str) -> bytes:
    msg = email.message_from_bytes(raw, policy=email.policy.default)
    for part in msg.walk():
        if part.get_filename() == filename:
            data = part.get_payload(decode=True)
            assert isinstance(data, bytes)
            return data
    raise AssertionError(filename)


def test_record_page_shows_items_first_and_attachment_downloads_are_the_original_bytes(
        reviewer: TestClient, intake: Intake) -> None:
    doc = ikensho_docx([("氏名", "審査 花子"), ("住所", "東京都千代田区1-1")],
                       [("本編 P.4", "定義を見直すべきである。"), ("別添 P.9", "例示を増やすべきである。")],
                       title=None, headers=("該当箇所", "意見"))
    raw = mail(body="意見書を添付します。", attachments=[
        ("意見書_審査花子.docx", doc, "application/vnd.openxmlformats-officedocument.wordprocessingml.document")])
    rid = ingest(intake, raw)
    html = reviewer.get(f"/records/{rid}").text
    assert html.index("定義を見直すべきである") < html.index("審査 花子") < html.index("意見書_審査花子.docx")
    assert "本編 P.4" in html and "受付可能な形式" in html
    r = reviewer.get(f"/records/{rid}/attachments/1")
    assert r.status_code == 200 and r.content == raw_part(raw, "意見書_審査花子.docx")
    cd = r.headers["content-disposition"]
    assert cd.startswith("attachment;") and unquote(cd.split("filename*=UTF-8''")[1]) == "意見書_審査花子.docx"
    assert r.headers["content-type"] == "application/octet-stream"
    eml = reviewer.get(f"/records/{rid}/raw")
    assert eml.status_code == 200 and eml.content == raw  # the trace field is kept as received


def test_quarantined_and_refused_files_cannot_be_downloaded(reviewer: TestClient, viewer: TestClient,
                                                            intake: Intake) -> None:
    infected = ingest(intake, mail(body="本編 P.3", attachments=[("a.txt", eicar(), "text/plain")]))
    pdf = ingest(intake, mail(body="本編 P.2", attachments=[("a.pdf", b"%PDF-1.4\n%%EOF\n", "application/pdf")]))
    assert records_status(intake, infected) == "quarantined"
    r = reviewer.get(f"/records/{infected}/attachments/1")
    assert r.status_code == 403 and b"X5O!P%@AP" not in r.content
    r = reviewer.get(f"/records/{infected}/raw")
    assert r.status_code == 403 and b"X5O!P%@AP" not in r.content
    assert "ダウンロード不可" in reviewer.get(f"/records/{infected}").text
    assert reviewer.get(f"/records/{pdf}/attachments/1").status_code == 403
    assert viewer.get(f"/records/{pdf}/raw").status_code == 403  # raw mail: reviewers only
    assert reviewer.get("/records/999999").status_code == 404


def test_hostile_subject_and_file_name_stay_text(reviewer: TestClient, intake: Intake) -> None:
    rid = ingest(intake, mail(body="本編 P.1 について。", subject=HOSTILE,
                              attachments=[(HOSTILE + ".txt", "本編 P.1 意見".encode(), "text/plain")]))
    for html in (reviewer.get("/records").text, reviewer.get(f"/records/{rid}").text):
        assert HOSTILE not in html and "&lt;script&gt;alert(1)&lt;/script&gt;" in html


# -- 判断 -------------------------------------------------------------------------------------------
def test_a_reviewer_releases_after_confirming_and_the_event_names_the_user(
        reviewer: TestClient, intake: Intake) -> None:
    rid = ingest(intake, mail(body="本編 P.2 について。", attachments=[("a.pdf", b"%PDF-1.4\n%%EOF\n",
                                                                       "application/pdf")]))
    path = f"/records/{rid}/decide/release"
    r = post(reviewer, path, {"note": ""})
    assert r.status_code == 400 and "理由（メモ）を入力してください" in r.text
    r = post(reviewer, path, {"note": "内容を確認した"})
    assert "本当に「受付にする」を行いますか" in r.text and records_status(intake, rid) == "rejected"
    r = reviewer.post(path, data={"note": "内容を確認した", "confirm": "yes", "csrf_token": csrf_of(r.text)})
    assert r.status_code == 200 and "受付不可 → 受付済" in r.text
    assert records_status(intake, rid) == "accepted"
    with intake.sessions() as session:
        msg = records.load(session, rid)
        assert msg is not None
        last = msg.events[-1]
        assert (last.action, last.actor, last.note) == ("release", "reviewer1", "内容を確認した")
    assert re.search(r'class="actor">reviewer1<', r.text)
    # Done twice: the second is refused with the reason, nothing changes.
    r = post(reviewer, path, {"note": "もう一度", "confirm": "yes"}, page=f"/records/{rid}/decide/reject")
    assert r.status_code == 409 and "この判断はできません" in r.text


def test_a_viewer_cannot_decide(viewer: TestClient, intake: Intake) -> None:
    rid = ingest(intake, mail(body="本編 P.1 について。"))
    assert viewer.get(f"/records/{rid}/decide/reject").status_code == 403
    r = post(viewer, f"/records/{rid}/decide/reject", {"note": "spam", "confirm": "yes"}, page="/records")
    assert r.status_code == 403 and records_status(intake, rid) == "accepted"
    assert "判断:" not in viewer.get(f"/records/{rid}").text


# -- ダッシュボード and 出力 --------------------------------------------------------------------------------
def test_dashboard_counts(reviewer: TestClient, intake: Intake) -> None:
    ingest(intake, mail(body="本編 P.1 について。", sender="x@example.jp"))
    ingest(intake, mail(body="本編 P.2 について。", sender="y@example.jp"))
    ingest(intake, mail(body="本編 P.2", attachments=[("a.pdf", b"%PDF-1.4\n%%EOF\n", "application/pdf")]))
    html = reviewer.get("/").text
    assert "2者（個人2者、法人・団体0者）から延べ2件" in html
    assert re.search(r"受付不可: <strong>1</strong>", html) and "2026-01-10" in html


def test_dashboard_says_when_one_clamd_of_two_is_down(intake: Intake) -> None:
    scan = dataclasses.replace(intake.config.scan, clamd=f"{intake.config.scan.clamd} unix:///nonexistent/clamd.sock")
    config = dataclasses.replace(intake.config, scan=scan)
    with intake.sessions.begin() as session:
        accounts.add(session, "viewer1", "viewer", PASSWORD)
    settings = dataclasses.replace(WebSettings.from_config(config), cookie_secure=False)
    with signed_in(create_app(config, intake.rules, settings, intake.sessions), "viewer1") as client:
        html = client.get("/").text
    assert "応答あり" in html and "2 台のうち 1 台が応答なし" in html
    assert "nonexistent" not in html  # the dashboard counts; `intake status` names them for the admin

def test_exports_public_for_all_internal_for_reviewers(reviewer: TestClient, viewer: TestClient,
                                                       intake: Intake) -> None:
    ingest(intake, mail(body="氏名：公開 禁子\n住所：東京都\n\n本編 P.1 について意見。"))
    public = viewer.get("/exports/public.csv")
    assert public.status_code == 200 and "公開 禁子" not in public.content.decode("utf-8-sig")
    assert "本編 P.1 について意見" in public.content.decode("utf-8-sig")
    assert viewer.get("/exports/internal.csv").status_code == 403
    internal = reviewer.get("/exports/internal.xlsx")
    assert internal.status_code == 200 and internal.content[:2] == b"PK"
    assert "公開 禁子" in reviewer.get("/exports/internal.csv").content.decode("utf-8-sig")


# -- `intake users` --------------------------------------------------------------------------------
def test_users_command(env: dict[str, str]) -> None:
    def run(*args: str, stdin: str = "") -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "daemon.cli", "users", *args], env=env, input=stdin,
                              capture_output=True, text=True, timeout=120)

    assert run("add", "staff.a", "--role", "reviewer", stdin="a long enough password\n").returncode == 0
    done = run("add", "staff.a", "--role", "viewer", stdin="a long enough password\n")
    assert done.returncode == 1 and done.stderr.startswith("intake: error: user 'staff.a' exists")
    done = run("add", "short", "--role", "viewer", stdin="short\n")
    assert done.returncode == 1 and "at least 12 characters" in done.stderr
    assert run("disable", "staff.a").returncode == 0
    listing = run("list").stdout
    assert re.search(r"staff\.a\s+reviewer\s+disabled", listing)
    done = run("passwd", "nobody", stdin="a long enough password\n")
    assert done.returncode == 1 and "no user 'nobody'" in done.stderr


# -- single sign-on through the trusted proxy's header ------------------------------------------------
def test_the_proxy_header_is_trusted_only_from_the_configured_proxy(intake: Intake) -> None:
    with intake.sessions.begin() as session:
        accounts.add(session, "sso.user", "viewer", PASSWORD)
        accounts.add(session, "sso.off", "viewer", PASSWORD)
        accounts.set_disabled(session, "sso.off", True)
    settings = dataclasses.replace(WebSettings.from_config(intake.config), cookie_secure=False,
                                   trusted_user_header="X-Remote-User", trusted_proxies=("127.0.0.1/32",))
    app = create_app(intake.config, intake.rules, settings, intake.sessions)
    proxy = TestClient(app, client=("127.0.0.1", 40000))
    r = proxy.get("/records", headers={"X-Remote-User": "sso.user"}, follow_redirects=False)
    assert r.status_code == 200 and "sso.user（閲覧者）" in r.text
    for who in ("sso.off", "nobody"):  # disabled or unknown: not signed in
        assert proxy.get("/records", headers={"X-Remote-User": who}, follow_redirects=False).status_code == 303
    other = TestClient(app, client=("10.0.0.9", 40000))
    r = other.get("/records", headers={"X-Remote-User": "sso.user"}, follow_redirects=False)
    assert r.status_code == 303 and r.headers["location"] == "/login"


def test_search_documents_are_built_for_records_that_existed_before_migration_0008(tmp_path: Any) -> None:
    import datetime as dt
    import json

    from sqlalchemy import text

    from daemon.staff.records import ListFilters, list_page
    from daemon.store import migrate
    from daemon.store.db import make_engine, make_sessionmaker

    url = f"sqlite:///{tmp_path / 'old.db'}"
    migrate.upgrade(url, "0006_lookup_indexes")
    engine = make_engine(url)
    result = {"comments": [{"text": "生成ＡＩの透明性について", "summary": "要旨：説明責任", "location": "別添 P.9"}],
              "submitter": {"kind": "individual", "name": "旧記録 太郎"}}
    with engine.begin() as conn:
        conn.execute(text(
            "INSERT INTO messages (status, reasons, flags, received_at, received_source, size, source, attempts,"
            " defects, result, created_at, updated_at, subject) VALUES ('accepted', '[]', '[]', :t, 'x', 1,"
            " 'ingest', 0, '[]', :r, :t, :t, '件名')"), {"t": dt.datetime(2026, 1, 5), "r": json.dumps(result)})
    engine.dispose()
    migrate.upgrade(url)
    engine = make_engine(url)
    with make_sessionmaker(engine)() as session:
        for words in (["生成ai"], ["説明責任"], ["別添", "p.9"], ["旧記録"], ["件名"]):
            assert list_page(session, ListFilters(words=words)).total == 1, words
        assert list_page(session, ListFilters(words=["存在しない"])).total == 0
    engine.dispose()
