"""The `intake` command as staff and other tools use it: real processes, real database, real clamd."""

from __future__ import annotations

import json
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import CORPUS
from mails import mail

PLANTED = ["山田太郎", "yamada.taro@example.jp", "東京都港区芝公園4-2-8", "090-1234-5678", "秘密の件名",
           "意見書_山田太郎.docx", "この意見本文は記録に残るがログには出ない"]


def intake(env: dict[str, str], *args: str, input: bytes | None = None) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run([sys.executable, "-m", "daemon.cli", *args], env=env, capture_output=True, input=input,
                          timeout=300)


def test_ingest_json_log_and_show(env: dict[str, str], tmp_path: Path) -> None:
    a = tmp_path / "a.eml"
    a.write_bytes(mail(body="本編 P.3 について。"))
    b = tmp_path / "b.eml"
    b.write_bytes(mail(body="別の意見", attachments=[("x.pdf", b"%PDF-1.4\n%%EOF\n", "application/pdf")]))
    done = intake(env, "ingest", "--json", "--received-at", "2026-01-30T00:00:01", str(a), str(b))
    assert done.returncode == 0, done.stderr
    lines = done.stdout.decode().splitlines()
    assert len(lines) == 2
    first, second = (json.loads(line) for line in lines)
    assert set(first) >= {"id", "status", "duplicate_of", "reasons", "flags", "received_at", "size", "sha256",
                          "message_id", "virus", "attachments", "comments", "submitter", "texts"}
    assert first["status"] == "accepted" and second["status"] == "rejected"
    assert first["received_at"] == "2026-01-30T00:00:01+09:00"  # no offset given: taken as JST
    assert "late" in first["flags"]

    table = intake(env, "log")
    assert table.returncode == 0
    out = table.stdout.decode()
    assert "2026-01-30 00:00:01 JST" in out and "attachment_not_allowed" in out
    # Newest first: both arrived at the same time, so the later record comes first.
    assert out.index(f"\n{second['id']} ") < out.index(f"\n{first['id']} ")

    only = intake(env, "log", "--status", "rejected", "--json")
    assert [json.loads(x)["id"] for x in only.stdout.decode().splitlines()] == [second["id"]]
    by_reason = intake(env, "log", "--reason", "attachment_not_allowed", "--json")
    assert [json.loads(x)["id"] for x in by_reason.stdout.decode().splitlines()] == [second["id"]]
    none = intake(env, "log", "--until", "2026-01-29T23:59:59+09:00", "--json")
    assert none.stdout.decode().strip() == ""

    shown = intake(env, "show", str(second["id"]))
    text = shown.stdout.decode()
    assert shown.returncode == 0
    assert "REJECTED" in text and "x.pdf" in text and "not_allowed" in text and "JST" in text
    raw = intake(env, "show", str(first["id"]), "--raw")
    assert raw.stdout == a.read_bytes()
    as_json = json.loads(intake(env, "show", str(first["id"]), "--json").stdout)
    assert as_json == first


def test_ingest_reports_unreadable_files_and_keeps_going(env: dict[str, str], tmp_path: Path) -> None:
    good = tmp_path / "good.eml"
    good.write_bytes(mail(body="ok"))
    done = intake(env, "ingest", str(tmp_path / "missing.eml"), str(good))
    assert done.returncode != 0
    err = done.stderr.decode().strip().splitlines()
    assert any("missing.eml" in line and "cannot read" in line for line in err)
    assert "Traceback" not in done.stderr.decode()
    assert "accepted" in done.stdout.decode()


def test_unreachable_database_is_one_line(env: dict[str, str], tmp_path: Path) -> None:
    bad = {**env, "INTAKE_DATABASE_URL": "postgresql+psycopg://nobody@127.0.0.1:1/none"}
    f = tmp_path / "m.eml"
    f.write_bytes(mail())
    done = intake(bad, "ingest", str(f))
    assert done.returncode != 0
    err = done.stderr.decode().strip()
    assert len(err.splitlines()) == 1 and "database unreachable" in err and "Traceback" not in err


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["lgo"], "intake: error: argument command: invalid choice: 'lgo'"),
        ([], "intake: error: the following arguments are required: command"),
        (["show", "seven"], "intake show: error: argument id: invalid int value: 'seven'"),
        (["log", "--since", "yesterday"], "intake log: error: argument --since: 'yesterday' is not an ISO 8601 time"),
    ],
)
def test_a_wrong_command_line_is_one_line(env: dict[str, str], args: list[str], expected: str) -> None:
    done = intake(env, *args)
    err = done.stderr.decode().strip()
    assert done.returncode == 2
    assert len(err.splitlines()) == 1 and err.startswith(expected), err


def test_unmigrated_database_says_what_to_run(env: dict[str, str], tmp_path: Path) -> None:
    fresh = {**env, "INTAKE_DATABASE_URL": f"sqlite:///{tmp_path / 'fresh.db'}"}
    done = intake(fresh, "log")
    assert done.returncode != 0 and "intake db upgrade" in done.stderr.decode()
    assert intake(fresh, "db", "upgrade").returncode == 0
    assert intake(fresh, "log").returncode == 0


@pytest.mark.parametrize(
    ("edit", "expected"),
    [
        (lambda t: t.replace("start = 2025-12-26T00:00:00+09:00", "start = 2025-12-26T00:00:00"), "window.start"),
        (lambda t: t.replace("max_message_bytes = 20971520", "max_message_bytes = -5"), "limits.max_message_bytes"),
        (lambda t: t.replace('word = ["doc", "docx"]', 'pdf = ["pdf"]'), "attachments.kinds.pdf"),
        (lambda t: t.replace("[fields]", "[fieldz]"), "fields.name"),
        (lambda t: t + "\n[[[broken", "not valid TOML"),
    ],
)
def test_bad_rules_file_is_a_one_line_error_naming_the_key(
    env: dict[str, str], tmp_path: Path, edit: object, expected: str
) -> None:
    rules = tmp_path / "rules.toml"
    rules.write_text(edit(Path(env["INTAKE_RULES"]).read_text(encoding="utf-8")), encoding="utf-8")  # type: ignore[operator]
    f = tmp_path / "m.eml"
    f.write_bytes(mail())
    done = intake({**env, "INTAKE_RULES": str(rules)}, "ingest", str(f))
    err = done.stderr.decode().strip()
    assert done.returncode == 2
    assert len(err.splitlines()) == 1 and expected in err and "Traceback" not in err


def test_logs_carry_no_personal_data(env: dict[str, str], tmp_path: Path) -> None:
    body = f"氏名：{PLANTED[0]}\n住所：{PLANTED[2]}\n電話：{PLANTED[3]}\n{PLANTED[6]}\n本編 P.1"
    docx = (CORPUS / "msoffice" / "test.docx").read_bytes()
    raw = mail(body=body, sender=f"{PLANTED[0]} <{PLANTED[1]}>", subject=PLANTED[4],
               attachments=[(PLANTED[5], docx, "application/octet-stream"),
                            (f"{PLANTED[0]}.pdf", b"%PDF-1.4\n%%EOF\n", "application/pdf")])
    f = tmp_path / "m.eml"
    f.write_bytes(raw)
    done = intake(env, "--log-level", "DEBUG", "ingest", "--json", str(f))
    assert done.returncode == 0
    logs = done.stderr.decode()
    events = [json.loads(line) for line in logs.splitlines() if line.startswith("{")]
    assert any(e.get("event") == "recorded" for e in events)  # the logs did say something
    for planted in PLANTED:
        assert planted not in logs
    # … while the record itself keeps what staff need.
    record = json.loads(done.stdout)
    assert record["attachments"][0]["filename"] == PLANTED[5]


def test_raw_store_is_not_readable_by_others(env: dict[str, str], tmp_path: Path) -> None:
    f = tmp_path / "m.eml"
    f.write_bytes(mail(body="権限"))
    record = json.loads(intake(env, "ingest", "--json", str(f)).stdout)
    data_dir = Path(env["INTAKE_DATA_DIR"])
    stored = next((data_dir / "raw").rglob(f"{record['sha256']}.eml"))
    assert stat.S_IMODE(stored.stat().st_mode) == 0o640
    for d in [stored.parent, stored.parent.parent, data_dir / "raw", data_dir / "quarantine"]:
        assert stat.S_IMODE(d.stat().st_mode) == 0o750, d
    assert stored.read_bytes() == f.read_bytes()


def test_real_corpus_mail_through_the_command(env: dict[str, str]) -> None:
    files = sorted(str(p) for p in (CORPUS / "eml").glob("*.eml"))
    done = intake(env, "ingest", "--json", *files)
    assert done.returncode == 0, done.stderr.decode()[-500:]
    records = [json.loads(line) for line in done.stdout.decode().splitlines()]
    assert len(records) == len(files) == 4
    assert all(r["status"] in ("accepted", "rejected") and "malformed" not in r["reasons"] for r in records)
