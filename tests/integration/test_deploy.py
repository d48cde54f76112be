"""The systemd unit is sound: `systemd-analyze verify` passes and `systemd-analyze security` rates it OK."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

from daemon.config import PACKAGE_ROOT

UNIT = PACKAGE_ROOT / "deploy" / "intake.service"


def local_unit(tmp_path: Path) -> Path:
    # verify checks that ExecStart= exists: point it at this checkout's venv instead of /opt/intake.
    unit = tmp_path / "intake.service"
    unit.write_text(UNIT.read_text().replace("/opt/intake/bin/intake", str(Path(sys.executable).parent / "intake")))
    return unit


def test_unit_verifies(tmp_path: Path) -> None:
    done = subprocess.run(["systemd-analyze", "verify", str(local_unit(tmp_path))], capture_output=True, timeout=60)
    assert done.returncode == 0, done.stderr.decode()
    assert b"intake.service" not in done.stderr  # no warnings about our unit


def test_unit_security_exposure_is_ok(tmp_path: Path) -> None:
    done = subprocess.run(["systemd-analyze", "security", "--offline=yes", str(local_unit(tmp_path))],
                          capture_output=True, timeout=60)
    out = done.stdout.decode()
    m = re.search(r"Overall exposure level for intake.service: ([0-9.]+) (\w+)", out)
    assert m, out[-500:]
    assert float(m[1]) <= 2.0 and m[2] in ("OK",), m.group(0)


def test_unit_uses_the_hardening_the_design_asks_for() -> None:
    text = UNIT.read_text()
    for directive in ("Type=notify", "WatchdogSec=", "Restart=on-failure", "StateDirectory=", "LogsDirectory=",
                      "LoadCredential=", "ProtectSystem=strict", "ProtectHome=", "PrivateTmp=yes",
                      "NoNewPrivileges=yes", "RestrictAddressFamilies=", "SystemCallFilter=@system-service",
                      "CapabilityBoundingSet=\n", "MemoryMax=", "ExecStartPre="):
        assert directive in text, directive
    assert "DynamicUser" not in text
