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


# -- issue 15: the strict configuration, [lmtp] and [service], file modes, orphans ---------------------------
def _conf(tmp_path: Path, text: str) -> str:
    conf = tmp_path / "strict.toml"
    conf.write_text(text)
    return str(conf)


def test_config_mistakes_are_one_line_naming_the_key_at_check_and_at_start(env: dict[str, str],
                                                                           tmp_path: Path) -> None:
    sock = tempfile.mkdtemp(prefix="chk-", dir="/tmp")
    cases = {
        '[lmtp]\nenabled = true\nsocket_path = "/tmp/x.sock"\n': "lmtp.socket_path: unknown key",
        '[lmtp]\nenabled = "yes"\n': "lmtp.enabled: wrong type str",
        "[service]\nstop_timout = 5\n": "service.stop_timout: unknown key",
        '[service]\nstop_timeout = "5"\n': "service.stop_timeout: wrong type str",
        "[intake]\nmax_attempt = 2\n": "intake.max_attempt: unknown key",
        "[scan]\ntimeout = 0\n": "scan.timeout: must be a positive number of seconds",
        "[metrics]\nenable = true\n": "metrics.enable: unknown key",
        "[lmpt]\nenabled = true\n": "[lmpt]: unknown table",
    }
    for text, expected in cases.items():
        bad = {**env, "INTAKE_CONFIG": _conf(tmp_path, text + f'\n# socket folder {sock}\n')}
        code, lines = check(bad)
        assert code == 1 and any(expected in x and x.startswith("FAIL") for x in lines), (text, lines)
        run = subprocess.run([sys.executable, "-m", "daemon.cli", "run"], env=bad, capture_output=True,
                             text=True, timeout=120)
        assert run.returncode == 2 and run.stderr.count("\n") == 1 and expected in run.stderr, (text, run.stderr)


def test_lmtp_socket_folder_group_and_ports_are_checked(env: dict[str, str], tmp_path: Path) -> None:
    import grp
    import os
    import socket

    folder = Path(tempfile.mkdtemp(prefix="chk-lmtp-", dir="/tmp"))  # 0700: group postfix cannot enter
    missing = {**env, "INTAKE_CONFIG": _conf(tmp_path, '[lmtp]\nenabled = true\nsocket = "/nonexistent/x/lmtp.sock"\n')}
    code, lines = check(missing)
    assert code == 1 and "folder /nonexistent/x does not exist" in line(lines, "lmtp")
    no_group = {**env, "INTAKE_CONFIG": _conf(tmp_path, f'[lmtp]\nenabled = true\nsocket = "{folder}/lmtp.sock"\n'
                                                        'socket_group = "no-such-group"\n')}
    code, lines = check(no_group)
    assert code == 1 and "group 'no-such-group' does not exist" in line(lines, "lmtp")
    group = grp.getgrgid(os.getgid()).gr_name if not _has_group("postfix") else "postfix"
    blocked = {**env, "INTAKE_CONFIG": _conf(tmp_path, f'[lmtp]\nenabled = true\nsocket = "{folder}/lmtp.sock"\n'
                                                       f'socket_group = "{group}"\n')}
    if group == "postfix":
        code, lines = check(blocked)
        assert code == 1 and f"cannot enter {folder}" in line(lines, "lmtp")
        os.chown(folder, -1, grp.getgrnam("postfix").gr_gid)
        folder.chmod(0o750)
    code, lines = check(blocked)
    assert code == 0 and line(lines, "lmtp").startswith("ok"), lines
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        taken = {**env, "INTAKE_CONFIG": _conf(tmp_path, f"[lmtp]\nenabled = true\nsocket = \"\"\nport = {port}\n")}
        code, lines = check(taken)
        assert code == 1 and f"lmtp.port: 127.0.0.1:{port} is in use" in line(lines, "lmtp")


def _has_group(name: str) -> bool:
    import grp

    try:
        grp.getgrnam(name)
    except KeyError:
        return False
    return True


def test_a_world_readable_database_fails_the_check_and_a_new_one_is_0640(tmp_path: Path,
                                                                         env: dict[str, str]) -> None:
    import os
    import stat

    db = tmp_path / "fresh" / "intake.db"
    fresh = {**env, "INTAKE_DATABASE_URL": f"sqlite:///{db}"}
    old = os.umask(0o022)  # the umask that made it 0644 before
    try:
        done = subprocess.run([sys.executable, "-m", "daemon.cli", "db", "upgrade"], env=fresh, capture_output=True,
                              timeout=120)
    finally:
        os.umask(old)
    assert done.returncode == 0, done.stderr
    assert stat.S_IMODE(db.stat().st_mode) == 0o640
    for extra in ("-wal", "-shm"):
        side = db.with_name(db.name + extra)
        assert not side.exists() or stat.S_IMODE(side.stat().st_mode) == 0o640
    code, lines = check(fresh)
    assert line(lines, "db modes").startswith("ok"), lines
    db.chmod(0o644)
    code, lines = check(fresh)
    assert code == 1 and line(lines, "db modes").startswith("FAIL") and "chmod o-rwx" in line(lines, "db modes")


def test_orphaned_raw_files_are_listed(env: dict[str, str], tmp_path: Path) -> None:
    import hashlib
    import os

    f = tmp_path / "m.eml"
    f.write_bytes(mail(body="孤児の確認"))
    assert subprocess.run([sys.executable, "-m", "daemon.cli", "ingest", str(f)], env=env,
                          capture_output=True, timeout=120).returncode == 0
    conf = _conf(tmp_path, "[service]\norphan_grace = 60\n")
    _, lines = check({**env, "INTAKE_CONFIG": conf})
    assert line(lines, "orphans").startswith("ok") and "none" in line(lines, "orphans")
    data = b"never recorded"
    sha = hashlib.sha256(data).hexdigest()
    orphan = Path(env["INTAKE_DATA_DIR"]) / "raw" / sha[:2] / sha[2:4] / f"{sha}.eml"
    orphan.parent.mkdir(parents=True, mode=0o750)
    orphan.write_bytes(data)
    orphan.chmod(0o640)
    _, lines = check({**env, "INTAKE_CONFIG": conf})
    assert line(lines, "orphans").startswith("ok") and "none" in line(lines, "orphans")  # younger than the grace
    os.utime(orphan, (0, 1_000_000))
    _, lines = check({**env, "INTAKE_CONFIG": conf})
    assert line(lines, "orphans").startswith("warn") and str(orphan) in line(lines, "orphans")
