"""`python -m devkit.demo [--once]`: the newcomer's demo on this machine, with nothing configured.

It runs the real daemon, `intake run`, against real throwaway servers:
- a Dovecot on 127.0.0.1 (devkit/dovecot.py) whose inbox is seeded by APPEND with the bundled
  sample mails (their INTERNALDATE is the date of their topmost Received: field, as if delivered then)
  and an EICAR mail made at run time;
- a clamd with the test signatures (devkit/clamd.py);
- a fresh SQLite database and raw store under ./var/demo, and a demo rules file whose window
  contains today (the real consultation's window is in the past);
- the staff's web application, `intake web`, on http://127.0.0.1:8080 with a reviewer account `demo`
  whose password is printed (a new one each run).

The daemon records every mail and moves it to Intake/Accepted, Intake/Rejected or Intake/Quarantine.
Ctrl-C stops it cleanly (with `--once` it stops by itself when the inbox is drained); then the
folders and `intake log` are printed.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from daemon import cli
from daemon.config import DEFAULT_RULES
from daemon.stages.received import topmost_received_date
from devkit.clamd import Clamd, eicar
from devkit.dovecot import Dovecot

# The checkout this dev kit lives in: the bundled samples and the demo's var/ folder are there.
CHECKOUT = Path(__file__).resolve().parent.parent
DEMO_DIR = Path(os.environ.get("INTAKE_DEMO_DIR") or CHECKOUT / "var" / "demo")


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
    msg["Message-ID"] = "<demo-eicar@example.net>"
    msg.set_content("添付をご確認ください。")
    msg.add_attachment(eicar(), maintype="application", subtype="octet-stream", filename="意見書.doc")
    msg.set_boundary("=_intake_demo_eicar")  # the same bytes on every run
    return msg.as_bytes(policy=email.policy.SMTP)


WEB_PORT = 8080
WEB_USER = "demo"


def demo_account() -> str:
    """A reviewer account for the demo's web application, with a new random password each run."""
    import secrets

    from daemon.config import load_config
    from daemon.staff import accounts
    from daemon.store.db import make_engine, make_sessionmaker

    password = secrets.token_urlsafe(12)
    engine = make_engine(load_config().database_url)
    with make_sessionmaker(engine).begin() as session:
        accounts.add(session, WEB_USER, "reviewer", password)
    engine.dispose()
    return password


def _fresh(folder: Path) -> None:
    """The demo starts from an empty database and raw store each time."""
    for name in ("intake.db", "intake.db-wal", "intake.db-shm"):
        (folder / name).unlink(missing_ok=True)
    shutil.rmtree(folder / "data", ignore_errors=True)
    folder.mkdir(parents=True, exist_ok=True)


def _count_records(db: Path) -> int:
    import sqlite3

    try:
        with sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=5) as conn:
            return int(conn.execute("SELECT count(*) FROM messages").fetchone()[0])
    except sqlite3.Error:
        return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m devkit.demo", description=__doc__.splitlines()[0])
    parser.add_argument("--once", action="store_true", help="stop when the inbox is drained (no Ctrl-C needed)")
    args = parser.parse_args(argv)

    _fresh(DEMO_DIR)
    rules = demo_rules(DEMO_DIR / "demo-rules.toml")
    work = Path(tempfile.mkdtemp(prefix="intake-demo-"))
    clamd = Clamd(work / "clamd")
    dovecot = Dovecot(work / "dovecot")
    db = DEMO_DIR / "intake.db"
    daemon: subprocess.Popen[bytes] | None = None
    web: subprocess.Popen[bytes] | None = None
    try:
        print(f"demo: starting clamd (test signatures) and Dovecot on 127.0.0.1 in {work}")
        clamd.start()
        dovecot.start()
        samples = sorted((CHECKOUT / "samples").glob("*.eml"))
        mails = [p.read_bytes() for p in samples] + [eicar_mail()]
        dates = []
        for raw in mails:
            when = topmost_received_date(raw)
            dates.append(when.timestamp() if when else None)
        dovecot.append(mails, dates=dates)
        print(f"demo: {len(mails)} mails delivered to the demo inbox by APPEND "
              f"({len(samples)} samples from samples/ and an EICAR test virus)")

        password = work / "imap-password"
        password.write_text(dovecot.password)
        password.chmod(0o600)
        conf = DEMO_DIR / "demo-intake.toml"
        conf.write_text("\n".join([
            "# Written by devkit/demo.py: the demo's daemon configuration.",
            "[intake]",
            f'data_dir = "{DEMO_DIR / "data"}"',
            f'database_url = "sqlite:///{db}"',
            f'rules = "{rules}"',
            "[scan]",
            f'clamd = "{clamd.url}"',
            "[imap]",
            'host = "127.0.0.1"',
            f"port = {dovecot.port}",
            'security = "plain"   # loopback only; production uses implicit TLS (993)',
            f'user = "{dovecot.user}"',
            f'password_file = "{password}"',
            "poll_interval = 60",
            "[service]",
            "retry_initial = 5",
            "retry_max = 60",
            "[web]",
            f"port = {WEB_PORT}",
            "cookie_secure = false   # plain http on 127.0.0.1; production sits behind a TLS proxy",
            "",
        ]), encoding="utf-8")
        os.environ.update({"INTAKE_CONFIG": str(conf)})
        for key in ("INTAKE_DATABASE_URL", "INTAKE_DATA_DIR", "INTAKE_RULES", "INTAKE_CLAMD"):
            os.environ.pop(key, None)
        if cli.main(["--log-level", "WARNING", "db", "upgrade"]) != 0:
            return 1
        web_password = demo_account()
        web = subprocess.Popen([sys.executable, "-m", "daemon.cli", "--log-level", "WARNING", "web"])
        print(f"demo: the staff's web application: http://127.0.0.1:{WEB_PORT}  "
              f"(user {WEB_USER}, password {web_password}, role reviewer)")

        command = [sys.executable, "-m", "daemon.cli", "--log-level", "WARNING", "run"]
        if args.once:
            command.append("--once")
            print("demo: running 'intake run --once' until the inbox is drained")
        else:
            print("demo: running 'intake run'; it keeps watching the inbox. Press Ctrl-C to stop it and see the log.")
        daemon = subprocess.Popen(command)
        announced = False
        while daemon.poll() is None:
            if not announced and _count_records(db) >= len(mails):
                announced = True
                if not args.once:
                    print(f"demo: all {len(mails)} mails recorded and moved; the daemon is idle (IMAP IDLE). "
                          "Press Ctrl-C to stop.")
            time.sleep(0.3)
        status = daemon.returncode
        daemon = None
        if status != 0:
            print(f"demo: intake run exited with {status}", file=sys.stderr)
            return status
    except KeyboardInterrupt:
        print("\ndemo: stopping (the daemon finishes what it has in flight)", file=sys.stderr)
        if daemon is not None:
            if daemon.poll() is None:
                daemon.send_signal(signal.SIGINT)
            try:
                daemon.wait(60)
            except subprocess.TimeoutExpired:
                daemon.kill()
                daemon.wait()
            daemon = None
    finally:
        if daemon is not None and daemon.poll() is None:
            daemon.terminate()
            daemon.wait(60)
        if web is not None and web.poll() is None:
            web.terminate()
            web.wait(30)
        try:
            folders = dovecot.folders() if dovecot.proc is not None else {}
        except OSError:
            folders = {}
        dovecot.stop()
        clamd.stop()
    if folders:
        print("\ndemo: the mailbox now: " + ", ".join(f"{name} {count}" for name, count in sorted(folders.items())))
    print()
    cli.main(["log"])
    print(f"\nSee one record with: INTAKE_CONFIG={DEMO_DIR / 'demo-intake.toml'} .venv/bin/intake show 1")
    return 0


if __name__ == "__main__":
    sys.exit(main())
