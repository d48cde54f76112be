"""`intake check` catches the usual deployment mistakes, each with one clear line."""

from __future__ import annotations

import subprocess
import sys
import tempfile
from pathlib import Path

from mails import mail


def check(env: dict[str, str]) -> tuple[int, list[str]]:
    done = subprocess.run([sys.executable, "-m", "daemon.cli", "check"], env=env, capture_output=True, timeout=120)
    assert "Traceback" not in done.stderr.decode()
    return done.returncode, done.stdout.decode().splitlines()


def line(lines: list[str], name: str) -> str:
    return next(x for x in lines if x.split()[1:2] == name.split()[:1])


def test_a_sound_setup_passes(env: dict[str, str]) -> None:
    code, lines = check(env)
    assert code == 0, lines
    assert all(x.startswith(("ok", "warn")) for x in lines)
    assert {x.split()[1] for x in lines} >= {"config", "rules", "database", "migration", "raw", "clamd"}


def test_wrong_database_url(env: dict[str, str]) -> None:
    code, lines = check({**env, "INTAKE_DATABASE_URL": "postgresql+psycopg://nobody@127.0.0.1:1/none"})
    assert code == 1
    assert line(lines, "database").startswith("FAIL") and "INTAKE_DATABASE_URL" in line(lines, "database")


def test_missing_migration(env: dict[str, str], tmp_path: Path) -> None:
    code, lines = check({**env, "INTAKE_DATABASE_URL": f"sqlite:///{tmp_path / 'empty.db'}"})
    assert code == 1
    assert line(lines, "migration").startswith("FAIL") and "intake db upgrade" in line(lines, "migration")


def test_clamd_down(env: dict[str, str], tmp_path: Path) -> None:
    code, lines = check({**env, "INTAKE_CLAMD": f"unix://{tmp_path / 'no-clamd.sock'}"})
    assert code == 1
    assert line(lines, "clamd").startswith("FAIL") and "start clamd" in line(lines, "clamd")


def test_raw_store_readable_by_others(env: dict[str, str], tmp_path: Path) -> None:
    f = tmp_path / "m.eml"
    f.write_bytes(mail(body="権限の確認"))
    assert subprocess.run([sys.executable, "-m", "daemon.cli", "ingest", str(f)], env=env,
                          capture_output=True, timeout=120).returncode == 0
    assert check(env)[0] == 0
    raw = Path(env["INTAKE_DATA_DIR"]) / "raw"
    raw.chmod(0o755)
    code, lines = check(env)
    assert code == 1
    assert line(lines, "raw store").startswith("FAIL") and "chmod" in line(lines, "raw store")


def test_imap_login_is_checked(env: dict[str, str], tmp_path: Path) -> None:
    from devkit.dovecot import Dovecot

    dovecot = Dovecot(Path(tempfile.mkdtemp(prefix="intake-check-dovecot-", dir="/tmp")))
    dovecot.start()
    try:
        conf = tmp_path / "intake.toml"
        conf.write_text(f'[imap]\nhost = "127.0.0.1"\nport = {dovecot.port}\nsecurity = "plain"\n'
                        f'user = "{dovecot.user}"\n')
        good = {**env, "INTAKE_CONFIG": str(conf), "INTAKE_IMAP_PASSWORD": dovecot.password}
        code, lines = check(good)
        assert code == 0, lines
        assert line(lines, "imap").startswith("ok")
        code, lines = check({**good, "INTAKE_IMAP_PASSWORD": "wrong-password"})
        assert code == 1
        assert line(lines, "imap").startswith("FAIL") and "login refused" in line(lines, "imap")
    finally:
        dovecot.stop()


def test_bad_alert_config_is_caught(env: dict[str, str], tmp_path: Path) -> None:
    conf = tmp_path / "intake.toml"
    conf.write_text('[alerts.mail]\nhost = "127.0.0.1"\nport = 1\nfrom = "intake@example.go.jp"\n'
                    'to = ["staff@example.go.jp"]\nstarttls = false\n')
    code, lines = check({**env, "INTAKE_CONFIG": str(conf)})
    assert code == 1
    assert line(lines, "alerts").startswith("FAIL") and "[alerts.mail]" in line(lines, "alerts")
