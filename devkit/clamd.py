"""Throwaway real services for the tests and the demo: a clamd with a test signature database.

ClamAV's servers cannot be reached here and clamd refuses to start without signatures, so we ship
our own: EICAR as an MD5 `.hdb` line and as an `.ndb` body signature, built at run time from EICAR's
base64 form so that no scanner on a developer machine trips over the repository. Production uses
freshclam's databases (README).
"""

from __future__ import annotations

import base64
import hashlib
import shutil
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from daemon.scanner import Scanner

# The checkout this dev kit lives in (the dev kit is never installed, so this is always a checkout).
CHECKOUT = Path(__file__).resolve().parent.parent
EICAR_B64 = "WDVPIVAlQEFQWzRcUFpYNTQoUF4pN0NDKTd9JEVJQ0FSLVNUQU5EQVJELUFOVElWSVJVUy1URVNULUZJTEUhJEgrSCo="
LIMITS_FILE = CHECKOUT / "deploy" / "clamd-limits.conf"


def eicar() -> bytes:
    return base64.b64decode(EICAR_B64)


def write_signatures(db_dir: Path) -> None:
    db_dir.mkdir(parents=True, exist_ok=True)
    data = eicar()
    (db_dir / "intake-test.hdb").write_text(f"{hashlib.md5(data).hexdigest()}:{len(data)}:Intake.Test.EICAR.MD5\n")
    (db_dir / "intake-test.ndb").write_text(f"Intake.Test.EICAR.Body:0:*:{data[:48].hex()}\n")


def add_body_signature(db_dir: Path, name: str, needle: bytes) -> None:
    """Add a new signature (for rescan tests); clamd picks it up on RELOAD."""
    with (db_dir / "intake-extra.ndb").open("a") as fh:
        fh.write(f"{name}:0:*:{needle.hex()}\n")


@dataclass
class Clamd:
    workdir: Path
    proc: subprocess.Popen[bytes] | None = None
    # A signature directory of its own (e.g. bench/signatures.py's production-like set, shared by several
    # clamd); the EICAR test signatures are written into it too. None: workdir/db.
    database_dir: Path | None = None
    # Called with the database directory after the test signatures are written (more signatures).
    extra_signatures: Callable[[Path], None] | None = None
    # Listen on 127.0.0.1:tcp_port instead of the Unix socket (a TCP clamd, as a remote one would be).
    tcp_port: int | None = None

    @property
    def socket(self) -> Path:
        return self.workdir / "clamd.sock"

    @property
    def url(self) -> str:
        return f"tcp://127.0.0.1:{self.tcp_port}" if self.tcp_port else f"unix://{self.socket}"

    @property
    def db_dir(self) -> Path:
        return self.database_dir or self.workdir / "db"

    @property
    def log(self) -> Path:
        return self.workdir / "clamd.log"

    def found_count(self) -> int:
        """How many FOUND verdicts this clamd has logged (its own count of the scans that found something)."""
        if not self.log.exists():
            return 0
        return sum(1 for line in self.log.read_text(errors="replace").splitlines()
                   if "instream(" in line and line.endswith(" FOUND"))

    def write_config(self) -> Path:
        self.workdir.mkdir(parents=True, exist_ok=True)
        (self.workdir / "tmp").mkdir(exist_ok=True)
        if self.database_dir is None or not (self.db_dir / "intake-test.ndb").exists():
            # (a shared directory is written once: rewriting it under a running clamd would make it reload)
            write_signatures(self.db_dir)
        if self.extra_signatures is not None:
            self.extra_signatures(self.db_dir)
        conf = self.workdir / "clamd.conf"
        listen = ([f"TCPSocket {self.tcp_port}", "TCPAddr 127.0.0.1"] if self.tcp_port
                  else [f"LocalSocket {self.socket}"])
        conf.write_text(
            "\n".join(
                [
                    "Foreground yes",
                    f"DatabaseDirectory {self.db_dir}",
                    *listen,
                    f"TemporaryDirectory {self.workdir / 'tmp'}",
                    f"PidFile {self.workdir / 'clamd.pid'}",
                    f"LogFile {self.workdir / 'clamd.log'}",
                    "LogTime yes",
                    LIMITS_FILE.read_text(),
                ]
            )
        )
        return conf

    def start(self, timeout: float = 60.0) -> None:
        binary = shutil.which("clamd") or "/usr/sbin/clamd"
        conf = self.write_config()
        self.proc = subprocess.Popen(
            [binary, "-c", str(conf)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        deadline = time.monotonic() + timeout
        scanner = Scanner(self.url, timeout=5)
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                log = (self.workdir / "clamd.log").read_text(errors="replace")[-2000:]
                raise RuntimeError(f"clamd exited with {self.proc.returncode}: {log}")
            if (self.tcp_port or self.socket.exists()) and scanner.ping():
                return
            time.sleep(0.05)
        raise RuntimeError("clamd did not answer PING in time")

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None
        self.socket.unlink(missing_ok=True)

    def reload(self) -> None:
        import clamd as clamd_pkg

        clamd_pkg.ClamdUnixSocket(path=str(self.socket), timeout=10).reload()
