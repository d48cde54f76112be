"""`python -m bench.corridor`: how far one message walks on the IMAP path, and how often it talks to the database.

Runs the real `intake run --once` in this process against a throwaway Dovecot and clamd (the dev kit) on a
fresh SQLite file, with N messages in the inbox, and counts, for the calls made on behalf of a message
(any frame whose stack holds one of the IMAP path's entry points):
- the distinct files of the package whose functions run (files visited),
- the entries into the pipeline module from another module of the package (re-entries),
- the SQL statements sent (database round trips).
It does this for 1 and for 1 + N messages and reports the per-message difference, so that start-up and
shutdown do not count. Used for the renovation's before/after figures (README, issue notes).
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import threading
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
# The functions that start a message's walk on the IMAP path, old and new names alike.
MARKERS = {"sync_pass", "_record", "_start_one", "_start_group", "_flush_moves", "record_message"}


class Tracer:
    def __init__(self, package_dir: Path) -> None:
        self.prefix = str(package_dir) + os.sep
        self.files: set[str] = set()
        self.pipeline_entries = 0
        self.statements = 0
        self.lock = threading.Lock()

    def _in_path(self, frame: Any) -> bool:
        f = frame
        depth = 0
        while f is not None and depth < 80:
            if f.f_code.co_name in MARKERS and f.f_code.co_filename.startswith(self.prefix):
                return True
            f = f.f_back
            depth += 1
        return False

    def profile(self, frame: Any, event: str, _arg: Any) -> None:
        if event != "call":
            return
        name = frame.f_code.co_filename
        if not name.startswith(self.prefix) or not self._in_path(frame):
            return
        rel = name[len(self.prefix):]
        caller = frame.f_back.f_code.co_filename if frame.f_back is not None else ""
        with self.lock:
            self.files.add(rel)
            # A call into the pipeline from another module of the package (not from the stdlib's contextlib).
            if rel in ("pipeline.py", "pipeline/__init__.py") and caller != name and caller.startswith(self.prefix):
                self.pipeline_entries += 1

    def statement(self, *_args: Any, **_kw: Any) -> None:
        if self._in_path(sys._getframe(1)):
            with self.lock:
                self.statements += 1


def run_once(count: int, mail: bytes) -> tuple[set[str], int, int]:
    from sqlalchemy import event
    from sqlalchemy.engine import Engine

    try:
        from devkit.clamd import Clamd
        from devkit.dovecot import Dovecot
    except ImportError:  # the layout before the renovation
        from daemon.devkit import Clamd  # type: ignore[no-redef]
        from daemon.devkit_imap import Dovecot  # type: ignore[no-redef]
    import daemon
    from daemon import cli

    work = Path(tempfile.mkdtemp(prefix="intake-corridor-"))
    clamd, dovecot = Clamd(work / "clamd"), Dovecot(work / "dovecot")
    clamd.start()
    dovecot.start()
    try:
        mails = [mail.replace(b"Message-ID: <", f"Message-ID: <c{i}-".encode(), 1) for i in range(count)]
        dovecot.append(mails)
        password = work / "pw"
        password.write_text(dovecot.password)
        conf = work / "intake.toml"
        conf.write_text("\n".join([
            "[intake]", f'data_dir = "{work / "data"}"', f'database_url = "sqlite:///{work / "intake.db"}"',
            "[scan]", f'clamd = "{clamd.url}"',
            "[imap]", 'host = "127.0.0.1"', f"port = {dovecot.port}", 'security = "plain"',
            f'user = "{dovecot.user}"', f'password_file = "{password}"', "poll_interval = 60", "",
        ]), encoding="utf-8")
        os.environ["INTAKE_CONFIG"] = str(conf)
        for key in ("INTAKE_DATABASE_URL", "INTAKE_DATA_DIR", "INTAKE_RULES", "INTAKE_CLAMD"):
            os.environ.pop(key, None)
        assert cli.main(["--log-level", "ERROR", "db", "upgrade"]) == 0
        tracer = Tracer(Path(daemon.__file__).resolve().parent)
        event.listen(Engine, "before_cursor_execute", tracer.statement)
        threading.setprofile(tracer.profile)
        sys.setprofile(tracer.profile)
        try:
            rc = cli.main(["--log-level", "ERROR", "run", "--once"])
        finally:
            sys.setprofile(None)
            threading.setprofile(None)  # type: ignore[arg-type]
            event.remove(Engine, "before_cursor_execute", tracer.statement)
        assert rc == 0, f"intake run --once exited {rc}"
        assert dovecot.count("INBOX") == 0, "the inbox was not drained"
        return tracer.files, tracer.pipeline_entries, tracer.statements
    finally:
        dovecot.stop()
        clamd.stop()


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.corridor", description=__doc__.splitlines()[0])
    p.add_argument("--messages", type=int, default=10, help="extra messages for the difference (default 10)")
    p.add_argument("--mail", default=str(ROOT / "samples" / "02-word-ikensho.eml"))
    args = p.parse_args(argv)
    mail = Path(args.mail).read_bytes()
    _files_1, entries_1, stmts_1 = run_once(1, mail)
    files_n, entries_n, stmts_n = run_once(1 + args.messages, mail)
    n = args.messages
    rooms = sorted({name.split("/")[0] for name in files_n})
    print(f"files visited on the IMAP path: {len(files_n)}, in {len(rooms)} rooms: {', '.join(rooms)}")
    for name in sorted(files_n):
        print(f"  {name}")
    print(f"calls into the pipeline module from other modules, per message: {(entries_n - entries_1) / n:.1f}")
    print(f"database statements per message: {(stmts_n - stmts_1) / n:.1f}")
    print(f"(1 message: {stmts_1} statements; {1 + n} messages: {stmts_n} statements)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
