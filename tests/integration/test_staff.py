"""Staff tools (issue 7) on a fixture set of ~30 mixed mails ingested once per backend through the real pipeline
(real clamd, real SQLite / PostgreSQL): `intake log` search, `stats`, and the xlsx / csv exports, read back with
openpyxl and converted by LibreOffice; the `--public` export is scanned cell by cell for every planted string."""

from __future__ import annotations

import csv
import datetime as dt
import io
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import openpyxl
import pytest

from daemon import logs
from daemon.config import Config, ScanConfig
from daemon.model import Arrival
from daemon.pipeline import Intake
from daemon.rules import load_rules
from daemon.scanner import Scanner
from daemon.staff.groups import find_groups, jaccard, shingles
from devkit.clamd import Clamd, eicar
from devkit.ikensho import ikensho_docx, ikensho_xlsx

from conftest import BACKENDS, RULES, fresh_database
from mails import mail

JST = dt.timezone(dt.timedelta(hours=9))


def at(day: str, hm: str = "10:00") -> dt.datetime:
    return dt.datetime.fromisoformat(f"{day}T{hm}:00").replace(tzinfo=JST)


# -- the fixture set -------------------------------------------------------------------------------
@dataclass
class Spec:
    key: str
    raw: bytes
    received: dt.datetime
    status: str
    kind: str = "individual"  # individual | organization (public form decided by kind + anonymous)
    public_name: str = "個人"
    # (該当資料, 該当箇所, 意見); {{…}} marks what the public export masks
    items: list[tuple[str, str, str]] = field(default_factory=list)
    private: list[str] = field(default_factory=list)  # planted personal strings
    flags: set[str] = field(default_factory=set)
    scanner: str | None = None  # a clamd URL other than the fixture's (a dead one: held)
    staff_name: str | None = None  # 意見提出者 in the staff's export (default: public_name)


def individual(name: str, address: str, phone: str, email: str, comment: str) -> str:
    return f"氏名：{name}\n住所：{address}\n電話番号：{phone}\nメールアドレス：{email}\n\n{comment}\n"


FORM = "本編 P.12 について、中小企業への支援策を拡充すべきである。特に、AIの安全性評価に要する費用の補助を求める。"
NEAR = ("本編 P.20 について、生成AIの学習データの透明性を確保するため、事業者に学習データの概要を公表する義務を"
        "課すべきである。{city}在住の一市民として強く要望する。")
PEOPLE = [  # name, address, phone, mail
    ("山田 花子", "東京都港区芝公園4-2-8", "090-1111-2222", "hanako.yamada@example.jp"),
    ("佐藤 一郎", "大阪府大阪市北区梅田1-1-1", "06-3333-4444", "ichiro.sato@example.jp"),
    ("鈴木 次郎", "愛知県名古屋市中区栄3-3-3", "052-555-6666", "jiro.suzuki@example.net"),
    ("高木 三郎", "福岡県福岡市博多区博多駅前2-2-2", "092-777-8888", "saburo.takagi@example.org"),
]
FORM_PEOPLE = [(f"形式 {n}", f"北海道札幌市中央区北{i}条西1-1", f"011-200-{1000 + i}", f"form{i}@example.jp")
               for i, n in enumerate(["一美", "二葉", "三樹", "四季", "五月", "六花"], 1)]
NEAR_PEOPLE = [(f"類似 {n}", f"{c}本町{i}-1-1", f"0{i}9-300-{2000 + i}", f"near{i}@example.jp", c)
               for i, (n, c) in enumerate([("太一", "仙台市"), ("健二", "横浜市"), ("真三", "京都市"),
                                           ("士郎", "神戸市")], 1)]


def fixture_specs() -> list[Spec]:
    s: list[Spec] = []

    def person(key: str, who: tuple[str, str, str, str], comment: str, received: dt.datetime,
               items: list[tuple[str, str, str]], status: str = "accepted", **kw: object) -> Spec:
        name, address, phone, email = who
        spec = Spec(key, mail(body=individual(name, address, phone, email, comment), sender=email,
                              subject=f"意見 {key}", received=received),
                    received, status, items=items, private=[name, name.replace(" ", ""), address, phone, email],
                    staff_name=name, **kw)  # type: ignore[arg-type]
        s.append(spec)
        return spec

    person("I1", PEOPLE[0], "本編 P.3 について、用語「AIシステム」の定義を明確にすべきである。",
           at("2025-12-26", "09:00"),
           [("本編", "P.3", "本編 P.3 について、用語「AIシステム」の定義を明確にすべきである。")])
    person("I1b", PEOPLE[0], "別添 P.8 について、リスク評価表の記入例を示してほしい。", at("2026-01-05", "11:30"),
           [("別添", "P.8", "別添 P.8 について、リスク評価表の記入例を示してほしい。")])
    person("I2", PEOPLE[1],
           "【意見1】\n本編 P.5 について、事業者の責任範囲を具体的に示すべきである。\n"
           "【意見2】\n別添 第2章 について、チェックリストの項目を減らすべきである。以上、佐藤一郎より。",
           at("2026-01-06", "14:00"),
           [("本編", "P.5", "本編 P.5 について、事業者の責任範囲を具体的に示すべきである。"),
            ("別添", "第2章", "別添 第2章 について、チェックリストの項目を減らすべきである。以上、{{佐藤一郎}}より。")])
    person("I3", PEOPLE[2],
           "本編 P.7 の記載について意見がある。詳細は jiro.suzuki@example.net までお問い合わせください。",
           at("2026-01-06", "18:45"),
           [("本編", "P.7",
             "本編 P.7 の記載について意見がある。詳細は {{jiro.suzuki@example.net}} までお問い合わせください。")])
    s.append(Spec("I4", mail(body="別添 P.10 の図表に出典を記載してほしい。", sender="nobody-named@example.org",
                             subject="意見", received=at("2026-01-07", "08:00")),
                  at("2026-01-07", "08:00"), "accepted",
                  items=[("別添", "P.10", "別添 P.10 の図表に出典を記載してほしい。")],
                  private=["nobody-named@example.org"], staff_name=""))
    person("I5", PEOPLE[3], "要旨：評価手法の統一\n本編 第3章 について、評価手法を統一すべきである。",
           at("2026-01-08", "12:00"),
           [("本編", "第3章", "本編 第3章 について、評価手法を統一すべきである。")])

    c1_fields = [("名称", "株式会社サンプル商事"), ("代表者氏名", "代表取締役 高橋 健"),
                 ("所在地", "東京都千代田区丸の内1-2-3"), ("電話番号", "03-5555-6666"),
                 ("連絡担当者", "田中 美咲"), ("メールアドレス", "tanaka.misaki@sample-shoji.example.jp")]
    c1_rows = [("本編 P.3", "用語の定義を明確にすべきである。", "解釈が分かれるため。"),
               ("別添 第2章", "図表の出典を示してほしい。", "検証できないため。"),
               ("本編 5頁", "中小企業向けの手順を追加してほしい。", "負担が大きいため。本件は田中 美咲が担当。")]
    s.append(Spec("C1", mail(body="別添のとおり意見を提出します。\n担当 田中 美咲 03-5555-6666",
                             sender="tanaka.misaki@sample-shoji.example.jp",
                             attachments=[("意見書_サンプル商事.docx", ikensho_docx(c1_fields, c1_rows),
                                           "application/octet-stream")], received=at("2026-01-09", "10:00")),
                  at("2026-01-09", "10:00"), "accepted", kind="organization",
                  public_name="株式会社サンプル商事 代表取締役 高橋 健",
                  items=[("本編", "本編 P.3", "用語の定義を明確にすべきである。\n解釈が分かれるため。"),
                         ("別添", "別添 第2章", "図表の出典を示してほしい。\n検証できないため。"),
                         ("本編", "本編 5頁",
                          "中小企業向けの手順を追加してほしい。\n負担が大きいため。本件は{{田中 美咲}}が担当。")],
                  private=["東京都千代田区丸の内1-2-3", "03-5555-6666", "田中 美咲", "田中美咲",
                           "tanaka.misaki@sample-shoji.example.jp"]))
    c2_fields = [("団体名", "一般社団法人テスト協会"), ("代表者", "理事長 伊藤 誠"),
                 ("所在地", "神奈川県横浜市西区みなとみらい2-2-1"), ("電話", "045-123-4567"), ("担当者", "渡辺 恵")]
    c2_rows = [("別添 P.15", "用語集を追加してほしい。", "初学者に分かりにくいため。"),
               ("本編 P.22", "施行時期を明記すべきである。", "準備期間が必要なため。")]
    s.append(Spec("C2", mail(body="意見書を添付します。", sender="info@test-kyokai.example.or.jp",
                             attachments=[("意見書.xlsx", ikensho_xlsx(c2_fields, c2_rows),
                                           "application/octet-stream")],
                             received=at("2026-01-15", "16:20")),
                  at("2026-01-15", "16:20"), "accepted", kind="organization",
                  public_name="一般社団法人テスト協会 理事長 伊藤 誠",
                  items=[("別添", "別添 P.15", "用語集を追加してほしい。\n初学者に分かりにくいため。"),
                         ("本編", "本編 P.22", "施行時期を明記すべきである。\n準備期間が必要なため。")],
                  private=["神奈川県横浜市西区みなとみらい2-2-1", "045-123-4567", "渡辺 恵", "渡辺恵",
                           "info@test-kyokai.example.or.jp"]))
    s.append(Spec("C3", mail(body="名称：匿名株式会社ヒミツ技研\n代表者氏名：中村 秘密\n"
                                  "所在地：京都府京都市下京区烏丸通1-1\n電話番号：075-999-0000\n匿名希望\n\n"
                                  "別添 P.30 について、監査手順の例示を増やすべきである。",
                             sender="kikaku@himitsu-giken.example.jp", received=at("2026-01-20", "09:30")),
                  at("2026-01-20", "09:30"), "accepted", kind="organization", public_name="法人・団体（匿名希望）",
                  staff_name="匿名株式会社ヒミツ技研 中村 秘密（匿名希望）",
                  items=[("別添", "P.30", "別添 P.30 について、監査手順の例示を増やすべきである。")],
                  private=["匿名株式会社ヒミツ技研", "ヒミツ技研", "中村 秘密", "中村秘密",
                           "京都府京都市下京区烏丸通1-1",
                           "075-999-0000", "kikaku@himitsu-giken.example.jp"]))
    s.append(Spec("C4", mail(body="名前：株式会社ミライ\n住所：埼玉県さいたま市浦和区高砂1-1\n\n"
                                  "本編 P.40 について、賛成である。",
                             sender="contact@mirai.example.co.jp", received=at("2026-01-22", "13:00")),
                  at("2026-01-22", "13:00"), "accepted", kind="organization", public_name="株式会社ミライ",
                  items=[("本編", "P.40", "本編 P.40 について、賛成である。")],
                  private=["埼玉県さいたま市浦和区高砂1-1", "contact@mirai.example.co.jp"]))
    for i, who in enumerate(FORM_PEOPLE, 1):
        person(f"F{i}", who, FORM, at("2026-01-2" + str(i % 3 + 3), f"1{i}:00"), [("本編", "P.12", FORM)])
    for i, (n, a, p, m, city) in enumerate(NEAR_PEOPLE, 1):
        text_ = NEAR.format(city=city)
        person(f"N{i}", (n, a, p, m), text_, at("2026-01-29", ["10:00", "15:00", "23:30", "23:59"][i - 1]),
               [("本編", "P.20", text_)])
    person("L1", ("遅延 太郎", "千葉県千葉市中央区1-1", "043-111-2222", "late@example.jp"),
           "本編 P.50 について、締切を延長してほしい。", at("2026-01-30", "00:00"),
           [("本編", "P.50", "本編 P.50 について、締切を延長してほしい。")], flags={"late"})
    s.append(Spec("L2", mail(body="名称：株式会社レイト\n所在地：東京都新宿区西新宿2-8-1\n\n"
                                  "別添 P.2 について、誤記がある。",
                             sender="info@late.example.jp", received=at("2026-02-02", "09:00")),
                  at("2026-02-02", "09:00"), "accepted", kind="organization", public_name="株式会社レイト",
                  items=[("別添", "P.2", "別添 P.2 について、誤記がある。")], private=["東京都新宿区西新宿2-8-1"],
                  flags={"late"}))
    person("E1", ("早着 花子", "静岡県静岡市葵区1-1", "054-111-2222", "early@example.jp"),
           "本編 P.1 について、公開前の意見である。", at("2025-12-20", "10:00"),
           [("本編", "P.1", "本編 P.1 について、公開前の意見である。")], flags={"early"})
    person("R1", ("却下 一子", "兵庫県神戸市1-1", "078-111-2222", "pdf@example.jp"), "意見はPDFで添付します。",
           at("2026-01-10", "10:00"), [], status="rejected")
    s[-1].raw = mail(body=individual("却下 一子", "兵庫県神戸市1-1", "078-111-2222", "pdf@example.jp",
                                     "意見はPDFで添付します。"),
                     sender="pdf@example.jp", attachments=[("意見.pdf", b"%PDF-1.4\n%%EOF\n", "application/pdf")],
                     received=at("2026-01-10", "10:00"))
    s.append(Spec("R2", mail(body="本編 P.2 について意見。", sender="elf@example.jp",
                             attachments=[("意見.txt", b"\x7fELF\x02\x01\x01" + b"\0" * 200, "text/plain")],
                             received=at("2026-01-11", "10:00")), at("2026-01-11", "10:00"), "rejected",
                  private=["elf@example.jp"]))
    s.append(Spec("Q1", mail(body="本編 P.9 について意見。", sender="virus@example.jp",
                             attachments=[("意見書.txt", eicar(), "text/plain")], received=at("2026-01-12", "10:00")),
                  at("2026-01-12", "10:00"), "quarantined", private=["virus@example.jp"]))
    first = s[0]
    s.append(Spec("D1", b"Received: from mx2.example.jp by mail.example.go.jp; Fri, 26 Dec 2025 09:05:00 +0900\r\n"
                  + first.raw, at("2025-12-26", "09:05"), "duplicate", private=first.private))
    s.append(Spec("H1", mail(body="本編 P.60 について意見。", sender="held@example.jp",
                             received=at("2026-01-13", "10:00")),
                  at("2026-01-13", "10:00"), "held", private=["held@example.jp"], scanner="unix:///nonexistent/clamd.sock"))
    return s


SPECS = fixture_specs()
EXPORTED = [sp for sp in SPECS if sp.status == "accepted" and not sp.flags & {"late", "early"}]
PLANTED = sorted({p for sp in SPECS for p in sp.private} | {n for n, *_ in PEOPLE} | {n for n, *_ in FORM_PEOPLE})


# -- one ingest per backend for the whole module ---------------------------------------------------
@dataclass
class Loaded:
    config: Config
    env: dict[str, str]
    ids: dict[str, int]
    tmp: Path


@pytest.fixture(scope="module", params=BACKENDS)
def loaded(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory, clamd: Clamd) -> Iterator[Loaded]:
    tmp = tmp_path_factory.mktemp(f"staff-{request.param}")
    with fresh_database(request.param, tmp, "intake_staff") as url:
        config = Config(data_dir=tmp / "data", database_url=url, rules_path=RULES,
                        scan=ScanConfig(clamd=clamd.url, timeout=30))
        logs.configure("WARNING")
        intake = Intake.from_config(config, load_rules(RULES))
        intake.raw_store.init()
        ids: dict[str, int] = {}
        for spec in SPECS:
            intake.scanner = Scanner(spec.scanner or clamd.url, timeout=30)
            ids[spec.key] = intake.process(Arrival(raw=spec.raw, source="ingest", received_at=spec.received,
                                                   received_source="argument")).id
        intake.sessions.kw["bind"].dispose()
        env = {**os.environ, "INTAKE_DATABASE_URL": url, "INTAKE_DATA_DIR": str(config.data_dir),
               "INTAKE_RULES": str(RULES), "INTAKE_CLAMD": clamd.url, "INTAKE_CONFIG": "/dev/null"}
        yield Loaded(config, env, ids, tmp)


def run(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[bytes]:
    done = subprocess.run([sys.executable, "-m", "daemon.cli", *args], env=env, capture_output=True, timeout=300)
    assert "Traceback" not in done.stderr.decode(), done.stderr.decode()
    return done


def log_ids(env: dict[str, str], *args: str) -> list[int]:
    done = run(env, "log", "--format", "json", *args)
    assert done.returncode == 0, done.stderr.decode()
    return [json.loads(line)["id"] for line in done.stdout.decode().splitlines()]


def test_the_fixture_set_was_ingested_as_planned(loaded: Loaded) -> None:
    lines = run(loaded.env, "log", "--json").stdout.decode().splitlines()
    records = {json.loads(x)["id"]: json.loads(x) for x in lines}
    assert len(records) == len(SPECS)
    for spec in SPECS:
        rec = records[loaded.ids[spec.key]]
        assert rec["status"] == spec.status, (spec.key, rec["reasons"])
        assert spec.flags <= set(rec["flags"]), spec.key


# -- expected rows ---------------------------------------------------------------------------------
def unmark(text_: str, public: bool) -> str:
    import re

    return re.sub(r"\{\{(.*?)\}\}", "＊＊＊" if public else r"\1", text_)


GROUP_OF = {**{f"F{i}": "G1" for i in range(1, 7)}, **{f"N{i}": "G2" for i in range(1, 5)}}


def expected_rows(loaded: Loaded, public: bool, specs: list[Spec] | None = None) -> list[list[str]]:
    chosen = sorted(specs or EXPORTED, key=lambda sp: (sp.received, loaded.ids[sp.key]))
    rows: list[list[str]] = []
    for sp in chosen:
        who = sp.public_name if public else (sp.staff_name if sp.staff_name is not None else sp.public_name)
        summary = "評価手法の統一" if sp.key == "I5" else ""
        for target, location, opinion in sp.items:
            rows.append([str(len(rows) + 1), str(loaded.ids[sp.key]),
                         sp.received.astimezone(JST).strftime("%Y-%m-%d %H:%M:%S"), who,
                         "法人・団体" if sp.kind == "organization" else "個人", target, location,
                         unmark(opinion, public), summary, None, GROUP_OF.get(sp.key, "")])  # type: ignore[list-item]
    return rows


def without_flags(rows: list[list[str]]) -> list[list[str]]:
    return [r[:9] + r[10:] for r in rows]


def public_shape(rows: list[list[str]]) -> list[list[str]]:
    """The public file's columns: no 受付番号, no flags."""
    return [r[:1] + r[2:9] + r[10:] for r in rows]


def sheet_rows(path: Path, sheet: str = "意見一覧") -> list[list[str]]:
    ws = openpyxl.load_workbook(path)[sheet]
    return [["" if v is None else str(v) for v in row] for row in ws.iter_rows(values_only=True)]


HEADERS = ["項番", "受付番号", "受付日時", "意見提出者", "提出者区分", "該当資料", "該当箇所", "意見", "要旨", "flags",
           "グループ"]
PUBLIC_HEADERS = ["項番", "受付日時", "意見提出者", "提出者区分", "該当資料", "該当箇所", "意見", "要旨", "グループ"]


def test_xlsx_export_has_exactly_the_ingested_rows(loaded: Loaded) -> None:
    out = loaded.tmp / "staff.xlsx"
    done = run(loaded.env, "export", "--format", "xlsx", "-o", str(out))
    assert done.returncode == 0, done.stderr.decode()
    rows = sheet_rows(out)
    assert rows[0] == HEADERS
    assert without_flags(rows[1:]) == without_flags(expected_rows(loaded, public=False))
    flags = {r[1]: r[9] for r in rows[1:]}
    assert "duplicate_text" in flags[str(loaded.ids["F2"])] and "duplicate_text" not in flags[str(loaded.ids["F1"])]
    assert flags[str(loaded.ids["I4"])].split(",") == ["missing_name", "missing_address"]
    wb = openpyxl.load_workbook(out)
    ws = wb["意見一覧"]
    assert ws.freeze_panes == "A2"
    assert ws["H2"].alignment.wrap_text and ws["A1"].font.bold
    assert ws.column_dimensions["H"].width >= 60 and ws.column_dimensions["A"].width < 10
    stats = [[c for c in r if c is not None] for r in wb["統計"].iter_rows(values_only=True)]
    assert stats[0] == ["提出者数・意見数", "19者（個人15者、法人・団体4者）から延べ24件"]
    assert ["G1", 6, "同一"] == stats[[r[:1] for r in stats].index(["G1"])][:3]


def test_csv_export_equals_the_xlsx_and_is_excel_ready(loaded: Loaded) -> None:
    xlsx, csv_path = loaded.tmp / "a.xlsx", loaded.tmp / "a.csv"
    assert run(loaded.env, "export", "--format", "xlsx", "-o", str(xlsx)).returncode == 0
    done = run(loaded.env, "export", "--format", "csv")  # to stdout
    assert done.returncode == 0
    assert done.stdout.startswith("\ufeff".encode())  # UTF-8 with BOM: Excel opens Japanese CSV right
    csv_path.write_bytes(done.stdout)
    rows = list(csv.reader(io.StringIO(done.stdout.decode("utf-8-sig"))))
    assert rows == sheet_rows(xlsx)
    assert len(rows) == 1 + 24


def test_public_export_has_no_personal_data_in_any_cell(loaded: Loaded) -> None:
    xlsx = loaded.tmp / "public.xlsx"
    assert run(loaded.env, "export", "--format", "xlsx", "--public", "-o", str(xlsx)).returncode == 0
    csv_done = run(loaded.env, "export", "--format", "csv", "--public", "--include-late", "--include-held")
    late_csv = csv_done.stdout.decode("utf-8-sig")
    wb = openpyxl.load_workbook(xlsx)
    cells = [str(v) for ws in wb.worksheets for row in ws.iter_rows(values_only=True) for v in row if v is not None]
    assert len(cells) > 24 * 7
    for planted in PLANTED:
        for cell in cells:
            assert planted not in cell, (planted, cell)
        assert planted not in late_csv, planted
    # no internal column (受付番号, flags) and no 統計 sheet in the public file
    assert wb.sheetnames == ["意見一覧"]
    rows = sheet_rows(xlsx)
    assert rows[0] == PUBLIC_HEADERS and next(csv.reader(io.StringIO(late_csv))) == PUBLIC_HEADERS
    assert rows[1:] == public_shape(expected_rows(loaded, public=True))
    # what may be published is there: organisations that did not ask for anonymity, with their representative
    names = {r[2] for r in rows[1:]}
    assert names == {"個人", "株式会社サンプル商事 代表取締役 高橋 健", "一般社団法人テスト協会 理事長 伊藤 誠",
                     "法人・団体（匿名希望）", "株式会社ミライ"}


def test_late_and_early_items_only_when_asked(loaded: Loaded) -> None:
    def record_ids(*args: str) -> set[str]:
        out = run(loaded.env, "export", "--format", "csv", *args).stdout.decode("utf-8-sig")
        return {r[1] for r in list(csv.reader(io.StringIO(out)))[1:]}

    outside = {str(loaded.ids[k]) for k in ("L1", "L2", "E1")}
    assert not record_ids() & outside
    assert record_ids("--include-late") >= outside
    never = {str(loaded.ids[k]) for k in ("D1", "R1", "R2", "Q1", "H1")}
    assert not record_ids("--include-late", "--include-held") & never
    assert record_ids("--target", "annex", "--kind", "organization") == {str(loaded.ids[k]) for k in ("C1", "C2", "C3")}


def test_libreoffice_reads_the_japanese_text(loaded: Loaded) -> None:
    xlsx = loaded.tmp / "lo.xlsx"
    assert run(loaded.env, "export", "--format", "xlsx", "--public", "-o", str(xlsx)).returncode == 0
    outdir = loaded.tmp / "lo-out"
    subprocess.run(["soffice", f"-env:UserInstallation=file://{loaded.tmp}/lo-profile", "--headless",
                    "--convert-to", "csv:Text - txt - csv (StarCalc):44,34,76,1", "--outdir", str(outdir), str(xlsx)],
                   check=True, capture_output=True, timeout=180)
    converted = (outdir / "lo.csv").read_text(encoding="utf-8")
    rows = list(csv.reader(io.StringIO(converted)))
    assert rows[0] == PUBLIC_HEADERS
    assert rows[1:] == public_shape(expected_rows(loaded, public=True))
    assert FORM in converted and "法人・団体（匿名希望）" in converted
    for planted in PLANTED:
        assert planted not in converted


def test_stats_line_and_form_letter_groups(loaded: Loaded) -> None:
    done = run(loaded.env, "stats")
    out = done.stdout.decode()
    assert done.returncode == 0, done.stderr.decode()
    assert out.splitlines()[0] == "19者（個人15者、法人・団体4者）から延べ24件"
    data = json.loads(run(loaded.env, "stats", "--json").stdout)
    assert data["line"] == "19者（個人15者、法人・団体4者）から延べ24件"
    assert (data["submitters"], data["individuals"], data["organizations"], data["items"]) == (19, 15, 4, 24)
    groups = [(g["group"], g["count"], g["identical"], g["records"]) for g in data["form_letter_groups"]]
    assert groups == [
        ("G1", 6, True, sorted(loaded.ids[f"F{i}"] for i in range(1, 7))),
        ("G2", 4, False, sorted(loaded.ids[f"N{i}"] for i in range(1, 5))),
    ]
    assert data["form_letter_groups"][0]["duplicateComments"] == 5
    assert data["by_status"] == {"accepted": 23, "rejected": 2, "quarantined": 1, "held": 1, "duplicate": 1}
    assert data["by_reason"] == {"attachment_not_allowed": 1, "attachment_type_mismatch": 1, "scan_unavailable": 1,
                                 "virus": 1}
    assert data["by_flag"]["late"] == 2 and data["by_flag"]["early"] == 1 and data["by_flag"]["duplicate_text"] == 5
    days = {d["day"]: d for d in data["per_day"]}
    assert days["2026-01-29"]["total"] == 4 and days["2025-12-26"]["total"] == 2
    assert days["before"]["total"] == 1 and days["after"]["total"] == 2
    assert len([d for d in data["per_day"] if d["day"][:1] == "2"]) == 35  # every day of the window
    hours = {h["hour"]: h["total"] for h in data["last_day_by_hour"]}
    assert (hours["10:00"], hours["15:00"], hours["23:00"], hours["00:00"]) == (1, 1, 2, 0)
    # with the late mail the 者 / 件 line grows by one individual and one organisation
    late = json.loads(run(loaded.env, "stats", "--json", "--include-late").stdout)
    assert late["line"] == "22者（個人17者、法人・団体5者）から延べ27件"
    # a stricter similarity leaves only the identical letters
    strict = json.loads(run(loaded.env, "stats", "--json", "--similarity", "0.99").stdout)
    assert [g["count"] for g in strict["form_letter_groups"]] == [6]
    assert "G2" in out and "similar" in out


def test_log_search(loaded: Loaded) -> None:
    ids = loaded.ids
    assert set(log_ids(loaded.env, "--flag", "late")) == {ids["L1"], ids["L2"]}
    assert log_ids(loaded.env, "--status", "held") == [ids["H1"]]
    assert log_ids(loaded.env, "--reason", "attachment_not_allowed") == [ids["R1"]]
    assert log_ids(loaded.env, "--text", "チェックリスト") == [ids["I2"]]
    assert log_ids(loaded.env, "--text", "ｃｈｅｃｋ") == []
    assert set(log_ids(loaded.env, "--text", "学習データ　の概要")) == {ids[f"N{i}"] for i in range(1, 5)}
    assert set(log_ids(loaded.env, "--kind", "organization", "--target", "annex")) == {ids[k] for k in
                                                                                     ("C1", "C2", "C3", "L2")}
    assert log_ids(loaded.env, "--kind", "unknown", "--status", "accepted") == [ids["I4"]]
    # JST without an offset; newest first; --limit
    day = log_ids(loaded.env, "--since", "2026-01-29T00:00", "--until", "2026-01-29T23:59:59")
    assert day == [ids["N4"], ids["N3"], ids["N2"], ids["N1"]]
    newest = log_ids(loaded.env, "--since", "2026-01-29T00:00", "--limit", "2", "--flag", "late")
    assert newest == [ids["L2"], ids["L1"]]
    # csv and table
    out = run(loaded.env, "log", "--format", "csv", "--target", "main", "--kind", "organization").stdout.decode()
    rows = list(csv.DictReader(io.StringIO(out)))
    assert {int(r["id"]) for r in rows} == {ids["C1"], ids["C2"], ids["C4"]}
    c1 = next(r for r in rows if int(r["id"]) == ids["C1"])
    assert (c1["status"], c1["submitter_kind"], c1["items"], c1["targets"]) == ("accepted", "organization", "3",
                                                                               "annex,main")
    assert c1["received_at"] == "2026-01-09T10:00:00+09:00"
    table = run(loaded.env, "log", "--flag", "late").stdout.decode()
    assert "2026-02-02 09:00:00 JST" in table and "2 record(s)" in table
    for planted in PLANTED:
        assert planted not in out and planted not in table


# -- form-letter grouping on its own ---------------------------------------------------------------
def test_near_duplicates_need_the_similarity() -> None:
    base = NEAR.format(city="仙台市")
    texts = [base, NEAR.format(city="札幌市"), FORM, FORM.replace(" ", "　"), "短い。", "短い。",
             "全く別の話題について書く。" * 3]
    groups = find_groups(texts, threshold=0.8)
    assert [(g.members, g.identical) for g in groups] == [([0, 1], False), ([2, 3], True), ([4, 5], True)]
    assert jaccard(shingles("あいうえおか"), shingles("あいうえおき")) == pytest.approx(3 / 5)
    assert [g.members for g in find_groups(texts, threshold=1.0)] == [[2, 3], [4, 5]]


def test_progress_bar_only_on_a_terminal_and_cells_are_never_formulas() -> None:
    from daemon.staff.export import Progress, csv_bytes, write_xlsx

    class Tty(io.StringIO):
        def isatty(self) -> bool:
            return True

    tty, plain = Tty(), io.StringIO()
    bar, quiet = Progress(400, "export xlsx", stream=tty), Progress(400, stream=plain)
    for i in range(1, 401):
        bar.update(i)
        quiet.update(i)
    assert tty.getvalue().startswith("\rexport xlsx [") and tty.getvalue().endswith("] 400/400\n")
    assert plain.getvalue() == ""
    row = [1, 2, "2026-01-10 09:00:00", "個人", "個人", "本編", "P.1", "=HYPERLINK(\"http://x\")", "@SUM(1)", "", ""]
    buf = io.BytesIO()
    write_xlsx(buf, [row], None, public=False)
    cell = openpyxl.load_workbook(io.BytesIO(buf.getvalue()))["意見一覧"]["H2"]
    assert cell.data_type == "s" and cell.value == row[7]
    assert list(csv.reader(io.StringIO(csv_bytes([row]).decode("utf-8-sig"))))[1][7:9] == ["'" + row[7], "'@SUM(1)"]
