"""Memory and CPU of a process tree, from /proc (Linux).

The daemon's peak RSS is its VmHWM (read just before it exits); its children (the extraction
forkserver and the short-lived workers it forks) are separate processes, so a sampler thread walks the
tree a few times a second and keeps, per pid, the largest VmHWM seen, and the largest sum of VmRSS over
the whole tree at one instant.
"""

from __future__ import annotations

import os
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

CLK_TCK = os.sysconf("SC_CLK_TCK")


def _status_kb(pid: int, key: str) -> int | None:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(key + ":"):
                return int(line.split()[1])
    except (OSError, ValueError, IndexError):
        return None
    return None


def children(pid: int) -> list[int]:
    """Every descendant of pid."""
    parents: dict[int, list[int]] = {}
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry.name}/stat").read_text()
        except OSError:
            continue
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        parents.setdefault(ppid, []).append(int(entry.name))
    out: list[int] = []
    todo = [pid]
    while todo:
        for child in parents.get(todo.pop(), []):
            out.append(child)
            todo.append(child)
    return out


def cpu_seconds(pid: int, with_children: bool = False) -> float:
    """utime + stime of pid (plus its reaped children's when asked)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    # after the ")": state(0) ppid(1) … utime(11) stime(12) cutime(13) cstime(14)
    ticks = int(fields[11]) + int(fields[12])
    if with_children:
        ticks += int(fields[13]) + int(fields[14])
    return ticks / CLK_TCK


@dataclass
class TreeMonitor:
    pid: int
    interval: float = 0.2
    main_hwm_kb: int = 0
    child_hwm_kb: dict[int, int] = field(default_factory=dict)
    peak_tree_rss_kb: int = 0
    child_cpu: dict[int, float] = field(default_factory=dict)
    main_cpu: float = 0.0
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def start(self) -> TreeMonitor:
        self._thread = threading.Thread(target=self._loop, name="bench-procmon", daemon=True)
        self._thread.start()
        return self

    def sample(self) -> None:
        hwm = _status_kb(self.pid, "VmHWM")
        if hwm is None:
            return
        self.main_hwm_kb = max(self.main_hwm_kb, hwm)
        self.main_cpu = max(self.main_cpu, cpu_seconds(self.pid))
        total = _status_kb(self.pid, "VmRSS") or 0
        for child in children(self.pid):
            chwm = _status_kb(child, "VmHWM")
            if chwm is not None:
                self.child_hwm_kb[child] = max(self.child_hwm_kb.get(child, 0), chwm)
                total += _status_kb(child, "VmRSS") or 0
                self.child_cpu[child] = max(self.child_cpu.get(child, 0.0), cpu_seconds(child, with_children=True))
        self.peak_tree_rss_kb = max(self.peak_tree_rss_kb, total)

    def _loop(self) -> None:
        while not self._stop.is_set():
            self.sample()
            self._stop.wait(self.interval)

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(5)

    @property
    def children_hwm_sum_kb(self) -> int:
        return sum(self.child_hwm_kb.values())

    @property
    def max_child_hwm_kb(self) -> int:
        return max(self.child_hwm_kb.values(), default=0)


def load_average() -> tuple[float, float, float]:
    one, five, fifteen = os.getloadavg()
    return round(one, 2), round(five, 2), round(fifteen, 2)


def now() -> float:
    return time.time()
