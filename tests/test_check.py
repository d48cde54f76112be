"""`intake check` catches the usual deployment mistakes, each with one clear line."""

from __future__ import annotations

import subprocess
import sys
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
