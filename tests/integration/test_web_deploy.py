"""The web application's systemd unit (deploy/intake-web.service) is sound, like the daemon's
(test_deploy.py): `systemd-analyze verify` passes and `systemd-analyze security` rates it OK."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

from daemon.config import PACKAGE_ROOT

UNIT = PACKAGE_ROOT / "deploy" / "intake-web.service"


def local_unit(tmp_path: Path) -> Path:
    unit = tmp_path / "intake-web.service"
    unit.write_text(UNIT.read_text().replace("/opt/intake/bin/intake", str(Path(sys.executable).parent / "intake")))
    return unit


def test_web_unit_verifies(tmp_path: Path) -> None:
    done = subprocess.run(["systemd-analyze", "verify", str(local_unit(tmp_path))], capture_output=True, timeout=60)
    assert done.returncode == 0, done.stderr.decode()
    assert b"intake-web.service" not in done.stderr


def test_web_unit_security_exposure_is_ok(tmp_path: Path) -> None:
    done = subprocess.run(["systemd-analyze", "security", "--offline=yes", str(local_unit(tmp_path))],
                          capture_output=True, timeout=60)
    out = done.stdout.decode()
    m = re.search(r"Overall exposure level for intake-web.service: ([0-9.]+) (\w+)", out)
    assert m, out[-500:]
    assert float(m[1]) <= 2.0 and m[2] == "OK", m.group(0)


def test_web_unit_is_the_daemons_user_and_reads_the_raw_store_only() -> None:
    text = UNIT.read_text()
    for directive in ("User=intake\n", "Group=intake-staff\n", "ReadOnlyPaths=/var/lib/intake/raw /var/lib/intake/"
                      "quarantine", "ProtectSystem=strict", "NoNewPrivileges=yes", "CapabilityBoundingSet=\n",
                      "SystemCallFilter=@system-service", "intake.toml web", "ExecStartPre="):
        assert directive in text, directive
    assert "DynamicUser" not in text


def test_intake_check_covers_the_web_settings_accounts_and_search_index(env: dict[str, str], tmp_path: Path) -> None:
    from sqlalchemy import text

    from daemon.store import migrate
    from daemon.store.db import make_engine

    def check(config: str = "") -> str:
        cfg = tmp_path / "intake.toml"
        cfg.write_text(config)
        done = subprocess.run([sys.executable, "-m", "daemon.cli", "check"], env={**env, "INTAKE_CONFIG": str(cfg)},
                              capture_output=True, text=True, timeout=120)
        return done.stdout

    url = f"sqlite:///{tmp_path / 'c.db'}"
    migrate.upgrade(url)
    env = {**env, "INTAKE_DATABASE_URL": url}
    out = check()
    assert "ok    web        http://127.0.0.1:8080, idle timeout 30 min" in out
    assert "warn  web        no web accounts yet" in out
    out = check('[web]\ntrusted_user_header = "X-Remote-User"\n')
    assert "FAIL  web        web.trusted_user_header: needs web.trusted_proxies" in out
    out = check("[web]\nport = 70000\n")
    assert "FAIL  web        web.port: must be 0..65535" in out
    engine = make_engine(url)
    with engine.begin() as conn:
        conn.execute(text("DROP TRIGGER record_search_insert"))
    engine.dispose()
    assert "FAIL  web        the text search triggers on messages are missing" in check()
