"""`python -m daemon.demo`: the newcomer's demo on this machine, with nothing configured.

Starts a throwaway clamd with the test signatures, writes a demo rules file whose window contains
today (the real consultation's window is in the past), migrates a SQLite database under ./var/demo,
runs every bundled sample mail (and an EICAR mail made at run time) through `intake ingest`, and
prints `intake log`. Ctrl-C stops it cleanly.
"""

from __future__ import annotations

import datetime as dt
import os
import re
import sys
import tempfile
from pathlib import Path

from daemon import cli
from daemon.config import DEFAULT_RULES, PACKAGE_ROOT
from daemon.devkit import Clamd, eicar

DEMO_DIR = PACKAGE_ROOT / "var" / "demo"


def demo_rules(target: Path) -> Path:
    """The consultation's rules with a window from 2026-01-01 to 30 days after today (JST)."""
    end = (dt.datetime.now(dt.timezone(dt.timedelta(hours=9))) + dt.timedelta(days=30)).date()
    text = DEFAULT_RULES.read_text(encoding="utf-8")
    text = re.sub(r"(?m)^start = .*$", "start = 2026-01-01T00:00:00+09:00", text, count=1)
    text = re.sub(r"(?m)^end = .*$", f"end = {end.isoformat()}T23:59:59+09:00", text, count=1)
    target.write_text(text, encoding="utf-8")
    return target


def eicar_mail() -> bytes:
    import email.policy
    from email.message import EmailMessage

    msg = EmailMessage()
    msg["From"] = "attacker@example.net"
    msg["To"] = "security-ai@example.go.jp"
    msg["Subject"] = "意見書（ウイルス）"
    msg.set_content("添付をご確認ください。")
    msg.add_attachment(eicar(), maintype="application", subtype="octet-stream", filename="意見書.doc")
    return msg.as_bytes(policy=email.policy.SMTP)


def main() -> int:
    DEMO_DIR.mkdir(parents=True, exist_ok=True)
    rules = demo_rules(DEMO_DIR / "demo-rules.toml")
    work = Path(tempfile.mkdtemp(prefix="intake-demo-"))
    clamd = Clamd(work / "clamd")
    os.environ.update({
        "INTAKE_CONFIG": "/dev/null",
        "INTAKE_DATA_DIR": str(DEMO_DIR / "data"),
        "INTAKE_DATABASE_URL": f"sqlite:///{DEMO_DIR / 'intake.db'}",
        "INTAKE_RULES": str(rules),
        "INTAKE_CLAMD": clamd.url,
    })
    try:
        print(f"demo: starting clamd with the test signatures in {work}")
        clamd.start()
        (work / "06-eicar.eml").write_bytes(eicar_mail())
        samples = [*sorted(str(p) for p in (PACKAGE_ROOT / "samples").glob("*.eml")), str(work / "06-eicar.eml")]
        if cli.main(["--log-level", "WARNING", "db", "upgrade"]) != 0:
            return 1
        status = cli.main(["--log-level", "WARNING", "ingest", *samples])
        print()
        cli.main(["log"])
        print(f"\nSee one record with: INTAKE_DATABASE_URL=sqlite:///{DEMO_DIR / 'intake.db'} "
              f"INTAKE_DATA_DIR={DEMO_DIR / 'data'} .venv/bin/intake show 1")
        return status
    except KeyboardInterrupt:
        print("demo: stopped", file=sys.stderr)
        return 130
    finally:
        clamd.stop()


if __name__ == "__main__":
    sys.exit(main())
