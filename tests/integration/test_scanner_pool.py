"""Several clamd (`[scan] clamd` as a list): round-robin, a clamd that fails is skipped for its back-off and
the scan goes to another, only all of them failing holds the mail (ScanUnavailable), a restarted clamd is used
again. Real clamd processes (devkit/clamd.py), really stopped and restarted."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from daemon.config import ConfigError, load_config
from daemon.scanner import Scanner, ScanUnavailable
from devkit.clamd import Clamd, eicar

CLEAN = b"Subject: test\r\n\r\n" + "意見です。".encode() * 200


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def pair(tmp_path: Path) -> Iterator[tuple[Clamd, Clamd]]:
    """Two clamd of this test's own (they are stopped by the tests): one on a Unix socket, one on TCP."""
    a = Clamd(tmp_path / "a")
    b = Clamd(tmp_path / "b", tcp_port=_free_port())
    a.start()
    b.start()
    try:
        yield a, b
    finally:
        a.stop()
        b.stop()


def wait_for(condition: Callable[[], bool], timeout: float = 30.0, every: Callable[[], object] | None = None) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition not met in time"
        if every is not None:
            every()
        else:
            time.sleep(0.02)


def test_scans_alternate_between_two_clamd(pair: tuple[Clamd, Clamd]) -> None:
    a, b = pair
    pool = Scanner([a.url, b.url], timeout=10)
    found0 = (a.found_count(), b.found_count())
    for _ in range(6):
        result = pool.scan(eicar())
        assert result.infected and result.signature and "EICAR" in result.signature
    assert not pool.scan(CLEAN).infected
    assert not pool.scan(CLEAN).infected
    # The pool's counters and clamd's own logs agree: three EICAR each, one clean each.
    assert [s.scans for s in pool.states()] == [4, 4]
    # clamd writes its log line after its reply: wait for the lines, then check there are no more.
    wait_for(lambda: a.found_count() - found0[0] >= 3 and b.found_count() - found0[1] >= 3, timeout=10)
    assert (a.found_count() - found0[0], b.found_count() - found0[1]) == (3, 3)
    assert all(s.up and s.failures == 0 for s in pool.states())


def test_one_string_with_several_urls_is_a_pool(pair: tuple[Clamd, Clamd]) -> None:
    a, b = pair
    pool = Scanner(f"{a.url}, {b.url}", timeout=10)  # as INTAKE_CLAMD / the config give it
    assert pool.urls == (a.url, b.url)
    for _ in range(4):
        assert not pool.scan(CLEAN).infected
    assert [s.scans for s in pool.states()] == [2, 2]
    one = Scanner(a.url, timeout=10)  # one URL: as it always was
    assert one.urls == (a.url,) and one.url == a.url and one.scan(eicar()).infected


def test_one_messages_scans_stay_on_one_clamd_and_messages_take_turns(pair: tuple[Clamd, Clamd]) -> None:
    # The whole-message scan unpacks the attachments and clamd caches each clean file: the attachment scans go
    # to the same clamd (bench/double_scan.py: ~1 % more CPU there, ~70 % on another clamd).
    a, b = pair
    pool = Scanner([a.url, b.url], timeout=10)
    for n in range(4):
        one = pool.for_message()
        for k in range(3):  # the whole message, then two attachments
            assert not one.scan(CLEAN + f"{n}-{k}".encode()).infected
        assert one.clamd == n % 2  # message 0 on clamd 0, message 1 on clamd 1 …
        assert [s.scans for s in pool.states()] == [3 * (n // 2 + 1), 3 * ((n + 1) // 2)]


def test_a_messages_clamd_that_stops_mid_message_hands_over_to_the_other(pair: tuple[Clamd, Clamd]) -> None:
    a, b = pair
    pool = Scanner([a.url, b.url], timeout=10)
    one = pool.for_message()
    assert not one.scan(CLEAN).infected and one.clamd == 0
    a.stop()
    assert one.scan(eicar()).infected and one.clamd == 1  # the attachment is still scanned: by the other clamd
    b.stop()
    with pytest.raises(ScanUnavailable):  # and with none left, the message is held (fail closed)
        one.scan(CLEAN)


def test_one_stopped_mid_run_the_other_takes_every_message(pair: tuple[Clamd, Clamd]) -> None:
    a, b = pair
    pool = Scanner([a.url, b.url], timeout=10)
    messages = [eicar() if k % 3 == 0 else CLEAN + str(k).encode() for k in range(60)]
    stopped = threading.Event()

    def scan(k: int) -> bool:
        if k == 20:
            b.stop()  # really stops the process (SIGTERM, waited for), while the other threads scan
            stopped.set()
        return pool.scan(messages[k]).infected

    with ThreadPoolExecutor(4) as workers:  # the pipeline scans from worker threads
        verdicts = list(workers.map(scan, range(len(messages))))
    assert stopped.is_set() and b.proc is None
    assert verdicts == [k % 3 == 0 for k in range(len(messages))]  # every one scanned, EICAR found each time
    sa, sb = pool.states()
    assert sa.scans + sb.scans == len(messages)
    assert sa.scans > sb.scans and sb.failures >= 1 and not sb.up
    # refused at connect, or cut off while a scan was in flight (clamd_no_reply): either way, scanned by the other
    assert sb.error is not None and sb.error.startswith(("clamd_no_reply", "clamd_unreachable:"))
    assert sa.up and sa.failures == 0


def test_all_down_is_scan_unavailable(pair: tuple[Clamd, Clamd]) -> None:
    a, b = pair
    pool = Scanner([a.url, b.url], timeout=5)
    assert pool.scan(eicar()).infected
    a.stop()
    b.stop()
    with pytest.raises(ScanUnavailable) as caught:
        pool.scan(eicar())  # fail closed: no verdict, the caller holds the message
    assert str(caught.value).startswith("clamd_unreachable")
    # Both are in back-off now, and still each scan asks them (last resort) rather than failing blind.
    failures = sum(s.failures for s in pool.states())
    with pytest.raises(ScanUnavailable):
        pool.scan(CLEAN)
    assert sum(s.failures for s in pool.states()) == failures + 2
    assert not pool.ping() and pool.version() is None


def test_a_restarted_clamd_is_used_again_after_its_backoff(pair: tuple[Clamd, Clamd]) -> None:
    a, b = pair
    pool = Scanner([a.url, b.url], timeout=5, backoff=1.0)
    b.stop()
    for _ in range(2):
        assert pool.scan(eicar()).infected
    sb = pool.states()[1]
    assert not sb.up and sb.failures == 1 and sb.scans == 0
    b.start()
    # Within its back-off the restarted clamd is not asked: the other one takes every scan.
    while pool.states()[1].retry_in_s > 0.3:
        assert not pool.scan(CLEAN).infected
        assert pool.states()[1].scans == 0
    # After it, the next scans reach it again (wait for the condition: scanning until it has answered).
    wait_for(lambda: pool.states()[1].scans >= 2, every=lambda: pool.scan(CLEAN))
    assert pool.states()[1].up and pool.states()[1].error is None
    before = b.found_count()
    for _ in range(4):
        assert pool.scan(eicar()).infected
    wait_for(lambda: b.found_count() - before >= 2, timeout=10)  # alternating again (clamd's own log)
    assert b.found_count() - before == 2 and pool.states()[1].scans >= 4


def test_backoff_doubles_up_to_its_cap(clamd: Clamd, tmp_path: Path) -> None:
    missing = f"unix://{tmp_path / 'none.sock'}"
    pool = Scanner([missing, clamd.url], timeout=5, backoff=0.2, max_backoff=0.5)
    given = []
    for _ in range(4):
        wait_for(lambda: pool.states()[0].up, timeout=5)  # its back-off is over: the next scan asks it again
        failures = pool.states()[0].failures
        wait_for(lambda f=failures: pool.states()[0].failures > f, timeout=5, every=lambda: pool.scan(CLEAN))
        given.append(pool.states()[0].retry_in_s)
    assert given[0] <= 0.2 and 0.2 < given[1] <= 0.4 and given[2] > 0.4 and given[3] > 0.4
    assert pool.states()[1].up and pool.states()[1].failures == 0


def test_ping_brings_a_restarted_clamd_back(pair: tuple[Clamd, Clamd]) -> None:
    a, b = pair
    pool = Scanner([a.url, b.url], timeout=5, backoff=0.3)
    b.stop()
    assert pool.ping()  # one answers: the pool is reachable
    assert not pool.states()[1].up
    b.start()
    wait_for(lambda: pool.states()[1].up and pool.states()[1].error is None, every=pool.ping)
    probed = pool.probe()
    assert [s.version is not None for s in probed] == [True, True]


def test_config_takes_a_list_and_names_a_bad_url(tmp_path: Path) -> None:
    conf = tmp_path / "intake.toml"
    conf.write_text('[scan]\nclamd = ["unix:///run/clamav/clamd.ctl", "tcp://10.0.0.5:3310"]\n')
    config = load_config(conf, env={})
    assert config.scan.clamd_urls == ("unix:///run/clamav/clamd.ctl", "tcp://10.0.0.5:3310")
    assert Scanner(config.scan.clamd).urls == config.scan.clamd_urls
    conf.write_text('[scan]\nclamd = "unix:///run/clamav/clamd.ctl"\n')
    assert load_config(conf, env={}).scan.clamd == "unix:///run/clamav/clamd.ctl"  # one URL: unchanged
    env = {"INTAKE_CLAMD": "unix:///a.ctl, tcp://10.0.0.5:3310 tcp://10.0.0.6:3310"}
    assert load_config(conf, env=env).scan.clamd_urls == ("unix:///a.ctl", "tcp://10.0.0.5:3310",
                                                         "tcp://10.0.0.6:3310")
    for value, key in (('["unix:///a.ctl", "http://10.0.0.5:3310"]', "scan.clamd[1]:"),
                       ('["unix:///a.ctl", "tcp://10.0.0.5:99999"]', "scan.clamd[1]:"),
                       ('["unix:///a.ctl", 3310]', "scan.clamd[1]:"),
                       ("[]", "scan.clamd:")):
        conf.write_text(f"[scan]\nclamd = {value}\n")
        with pytest.raises(ConfigError) as caught:
            load_config(conf, env={})
        assert str(caught.value).startswith(key) and "\n" not in str(caught.value)
    with pytest.raises(ConfigError, match=r"^INTAKE_CLAMD\[1\]: 'ftp://x'"):
        load_config(conf, env={"INTAKE_CLAMD": "unix:///a.ctl,ftp://x"})


def _check(env: dict[str, str]) -> tuple[int, list[str]]:
    done = subprocess.run([sys.executable, "-m", "daemon.cli", "check"], env=env, capture_output=True, timeout=120)
    assert "Traceback" not in done.stderr.decode()
    return done.returncode, [x for x in done.stdout.decode().splitlines() if x.split()[1:2] == ["clamd"]]


def test_intake_check_reports_each_clamd(env: dict[str, str], pair: tuple[Clamd, Clamd]) -> None:
    a, b = pair
    code, lines = _check({**env, "INTAKE_CLAMD": f"{a.url} {b.url}"})
    assert code == 0, lines
    assert lines[0].startswith("ok") and a.url in lines[0] and "ClamAV" in lines[0]
    assert lines[1].startswith("ok") and b.url in lines[1] and "ClamAV" in lines[1]
    b.stop()
    code, lines = _check({**env, "INTAKE_CLAMD": f"{a.url} {b.url}"})
    assert code == 0, lines  # one answers: the other takes the load
    assert lines[1].startswith("warn") and b.url in lines[1] and "clamd_unreachable" in lines[1]
    assert "1 of 2" in lines[2]
    a.stop()
    code, lines = _check({**env, "INTAKE_CLAMD": f"{a.url},{b.url}"})
    assert code == 1
    assert lines[0].startswith("FAIL") and lines[1].startswith("FAIL") and "none of the 2" in lines[2]


def test_intake_status_names_the_clamd_that_is_down(env: dict[str, str], pair: tuple[Clamd, Clamd]) -> None:
    a, b = pair
    b.stop()

    def status(*extra: str) -> subprocess.CompletedProcess[bytes]:
        done = subprocess.run([sys.executable, "-m", "daemon.cli", "status", *extra],
                              env={**env, "INTAKE_CLAMD": f"{a.url} {b.url}"}, capture_output=True, timeout=120)
        assert "Traceback" not in done.stderr.decode()
        return done

    text = status().stdout.decode()
    assert "clamd      reachable" in text and f"1 of 2 clamd NOT answering: {b.url}" in text
    data = json.loads(status("--json").stdout)
    assert data["clamd"]["reachable"] is True and data["clamd"]["down"] == [b.url] and data["clamd"]["count"] == 2
