"""A throwaway Postfix for the tests: a private instance (its own config dir, queue and log under a temp dir),
listening on 127.0.0.1 at a port of its own, relaying the consultation's address to the intake's LMTP socket.

The intake-facing settings are read from `deploy/postfix/` (main.cf.example, master.cf.example), so the tests
run exactly what the README tells an operator to install; only what makes an instance private is added here
(paths, the port, the socket, short retry timers so that a deferred message comes back within a test).

Needs root (Postfix's master) and Debian's postfix package (scripts/setup installs it). The temp dir must be
searchable by user postfix: make it with `postfix_dir()`, not pytest's tmp_path (0700).
"""

from __future__ import annotations

import os
import re
import shutil
import smtplib
import socket
import subprocess
import tempfile
import time
from pathlib import Path

from devkit.dovecot import free_port

DEPLOY = Path(__file__).resolve().parent.parent / "deploy" / "postfix"
RCPT = "pubcomment@example.go.jp"

# The daemons a relay-only instance needs (no local delivery, no pickup of sendmail, no TLS).
_MASTER = """\
{listen} inet  n       -       n       -       -       smtpd
cleanup   unix  n       -       n       -       0       cleanup
qmgr      unix  n       -       n       300     1       qmgr
rewrite   unix  -       -       n       -       -       trivial-rewrite
bounce    unix  -       -       n       -       0       bounce
defer     unix  -       -       n       -       0       bounce
trace     unix  -       -       n       -       0       bounce
verify    unix  -       -       n       -       1       verify
flush     unix  n       -       n       1000?   0       flush
proxymap  unix  -       -       n       -       -       proxymap
smtp      unix  -       -       n       -       -       smtp
relay     unix  -       -       n       -       -       smtp
showq     unix  n       -       n       -       -       showq
error     unix  -       -       n       -       -       error
retry     unix  -       -       n       -       -       error
discard   unix  -       -       n       -       -       discard
lmtp      unix  -       -       n       -       -       lmtp
anvil     unix  -       -       n       -       1       anvil
scache    unix  -       -       n       -       1       scache
postlog   unix-dgram n  -       n       -       1       postlogd
"""


def postfix_dir() -> Path:
    """A temp dir user postfix can traverse (0755), outside pytest's 0700 tree."""
    path = Path(tempfile.mkdtemp(prefix="intake-test-postfix-", dir="/tmp"))
    path.chmod(0o755)
    return path


def deploy_settings(name: str) -> list[str]:
    """The non-comment lines of deploy/postfix/<name>, continuation lines kept with their service."""
    return [line for line in (DEPLOY / name).read_text().splitlines() if line.strip() and not line.startswith("#")]


def intake_transport(socket_path: Path) -> str:
    """The transport of deploy/postfix/transport.example, pointed at this test's socket."""
    [line] = deploy_settings("transport.example")
    address, transport = line.split()
    return f"{address}={transport.split(':', 1)[0]}:unix:{socket_path}"


class Postfix:
    def __init__(self, workdir: Path, lmtp_socket: Path, message_size_limit: int | None = None) -> None:
        self.workdir = workdir
        self.socket = lmtp_socket
        self.port = free_port()
        self.etc = workdir / "etc"
        self.queue = workdir / "queue"
        self.log_file = workdir / "postfix.log"
        self.size_override = message_size_limit

    def write_config(self) -> None:
        self.etc.mkdir(exist_ok=True)
        self.queue.mkdir(mode=0o755, exist_ok=True)  # postfix start makes its subfolders with their owners
        (workdir := self.workdir / "data").mkdir(exist_ok=True)
        shutil.chown(workdir, "postfix", "postfix")
        deployed = [line for line in deploy_settings("main.cf.example") if not line.startswith("transport_maps")]
        if self.size_override is not None:
            deployed = [f"message_size_limit = {self.size_override}" if line.startswith("message_size_limit")
                        else line for line in deployed]
        main = [
            "compatibility_level = 3.6",
            f"queue_directory = {self.queue}",
            f"data_directory = {self.workdir / 'data'}",
            f"maillog_file = {self.log_file}",
            f"maillog_file_prefixes = {self.workdir}",
            "inet_interfaces = loopback-only",
            "inet_protocols = ipv4",
            "myhostname = mta.intake.test",
            "mydestination =",
            "mynetworks = 127.0.0.0/8",
            "relay_domains = example.go.jp",
            "alias_maps =",
            "alias_database =",
            "smtputf8_enable = yes",
            "biff = no",
            # Deferred mail comes back within a test, not in minutes.
            "queue_run_delay = 1s",
            "minimal_backoff_time = 1s",
            "maximal_backoff_time = 2s",
            # deploy/postfix/main.cf.example, as an operator installs it (the transport map inline):
            *deployed,
            f"transport_maps = inline:{{ {intake_transport(self.socket)} }}",
            # Bounces to the test senders go nowhere (no DNS here); the log shows them.
            "default_transport = discard:test",
            "",
        ]
        (self.etc / "main.cf").write_text("\n".join(main))
        master = _MASTER.format(listen=f"127.0.0.1:{self.port}") + "\n".join(deploy_settings("master.cf.example"))
        (self.etc / "master.cf").write_text(master + "\n")

    def _postfix(self, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(["postfix", "-c", str(self.etc), *args], capture_output=True, text=True, timeout=60)

    def start(self, timeout: float = 30.0) -> None:
        self.write_config()
        done = self._postfix("start")
        if done.returncode != 0:
            # Postfix writes its fatal line to a terminal only (else to syslog, absent here): ask through one.
            why = subprocess.run(["script", "-qc", f"postfix -c {self.etc} check", "/dev/null"],
                                 capture_output=True, text=True, timeout=60)
            raise RuntimeError(f"postfix start failed: {why.stdout.strip()[-500:]}")
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=1):
                    return
            except OSError:
                time.sleep(0.05)
        raise RuntimeError(f"postfix did not listen on {self.port}: {self.log()[-2000:]}")

    def stop(self) -> None:
        self._postfix("stop")

    def flush(self) -> None:
        """Try the deferred queue now (postqueue -f)."""
        subprocess.run(["postqueue", "-c", str(self.etc), "-f"], capture_output=True, timeout=30, check=False)

    def queue_ids(self) -> list[str]:
        out = subprocess.run(["postqueue", "-c", str(self.etc), "-j"], capture_output=True, text=True, timeout=30)
        return re.findall(r'"queue_id":\s*"([0-9A-F]+)"', out.stdout)

    def log(self) -> str:
        return self.log_file.read_text(errors="replace") if self.log_file.exists() else ""

    def send(self, raw: bytes, sender: str = "taro.yamada@example.jp", rcpt: str = RCPT) -> None:
        with smtplib.SMTP("127.0.0.1", self.port, timeout=120) as smtp:
            smtp.sendmail(sender, [rcpt], raw)

    def env(self) -> dict[str, str]:
        return {**os.environ, "MAIL_CONFIG": str(self.etc)}
