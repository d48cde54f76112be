"""The raw store: every message's exact bytes, once, addressed by SHA-256, fsync'd.

Layout: <data_dir>/raw/ab/cd/<sha256>.eml for ordinary mail and <data_dir>/quarantine/... for mail
that carries malware, so that a backup or a staff member browsing the evidence never trips over it.
Files are 0640 and folders 0750, group = the staff group when the config names one (R12).
A write is: temp file, write, fsync, rename, fsync the folder — durable before the record commits.
"""

from __future__ import annotations

import contextlib
import grp
import hashlib
import os
import re
import threading
import time
from collections.abc import Iterator
from pathlib import Path

FILE_MODE = 0o640
DIR_MODE = 0o750
_STORED = re.compile(r"^(?:\.)?([0-9a-f]{64})\.eml(?:\.\d+\.tmp)?$")


class RawStoreError(OSError):
    pass


def sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


class RawStore:
    def __init__(self, raw_dir: Path, quarantine_dir: Path, staff_group: str | None = None) -> None:
        self.raw_dir = raw_dir
        self.quarantine_dir = quarantine_dir
        self._gid: int | None = None
        # sha256 → when this process last wrote (or re-used) it: the orphan sweep never takes a file whose
        # record may be about to commit (daemon/store/orphans.py).
        self._recent: dict[str, float] = {}
        self._recent_lock = threading.Lock()
        if staff_group:
            try:
                self._gid = grp.getgrnam(staff_group).gr_gid
            except KeyError:
                raise RawStoreError(f"staff group {staff_group!r} does not exist") from None

    def _area(self, quarantined: bool) -> Path:
        return self.quarantine_dir if quarantined else self.raw_dir

    def path_for(self, sha256: str, quarantined: bool = False) -> Path:
        return self._area(quarantined) / sha256[:2] / sha256[2:4] / f"{sha256}.eml"

    def _ensure_dir(self, path: Path) -> None:
        # Create each level with the right mode ourselves; os.makedirs applies the umask.
        missing: list[Path] = []
        p = path
        while not p.exists():
            missing.append(p)
            p = p.parent
        for d in reversed(missing):
            with contextlib.suppress(FileExistsError):
                d.mkdir(mode=DIR_MODE)
            self._secure(d, DIR_MODE)

    def _secure(self, path: Path, mode: int) -> None:
        os.chmod(path, mode)
        if self._gid is not None:
            os.chown(path, -1, self._gid)

    def put(self, data: bytes, quarantined: bool = False) -> tuple[str, Path]:
        """Store bytes durably; idempotent (the same bytes are written once)."""
        digest = sha256_hex(data)
        final = self.path_for(digest, quarantined)
        self._touch_recent(digest)
        if final.exists() and final.stat().st_size == len(data):
            # Re-used (an earlier attempt left it): fresh again, so a sweep of another process leaves it alone.
            with contextlib.suppress(OSError):
                os.utime(final)
            return digest, final
        self._ensure_dir(final.parent)
        tmp = final.with_name(f".{final.name}.{os.getpid()}.tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, FILE_MODE)
        try:
            view = memoryview(data)
            while view:
                n = os.write(fd, view)
                view = view[n:]
            os.fsync(fd)
        finally:
            os.close(fd)
        self._secure(tmp, FILE_MODE)
        os.replace(tmp, final)
        self._fsync_dir(final.parent)
        return digest, final

    def move(self, sha256: str, quarantined: bool) -> Path:
        """Move a stored message into (or out of) the quarantine area; idempotent."""
        src = self.path_for(sha256, not quarantined)
        dst = self.path_for(sha256, quarantined)
        if dst.exists():
            if src.exists():
                src.unlink()
            return dst
        if not src.exists():
            raise RawStoreError(f"raw message {sha256[:12]} is missing from the store")
        self._ensure_dir(dst.parent)
        os.replace(src, dst)
        self._fsync_dir(dst.parent)
        self._fsync_dir(src.parent)
        return dst

    def get(self, sha256: str) -> bytes:
        for quarantined in (False, True):
            p = self.path_for(sha256, quarantined)
            if p.exists():
                return p.read_bytes()
        raise RawStoreError(f"raw message {sha256[:12]} is missing from the store")

    def locate(self, sha256: str) -> Path | None:
        for quarantined in (False, True):
            p = self.path_for(sha256, quarantined)
            if p.exists():
                return p
        return None

    def _touch_recent(self, digest: str) -> None:
        now = time.monotonic()
        with self._recent_lock:
            self._recent[digest] = now
            if len(self._recent) > 10_000:  # forget old entries; the sweep's grace is what counts
                for key in [k for k, t in self._recent.items() if now - t > 86_400]:
                    del self._recent[key]

    def written_within(self, digest: str, seconds: float) -> bool:
        with self._recent_lock:
            when = self._recent.get(digest)
        return when is not None and time.monotonic() - when < seconds

    def files(self) -> Iterator[tuple[str, Path]]:
        """Every stored file (and leftover temp file) of both areas, as (sha256, path)."""
        for area in (self.raw_dir, self.quarantine_dir):
            if not area.is_dir():
                continue
            for path in area.glob("*/*/*"):
                match = _STORED.match(path.name)
                if match and path.is_file():
                    yield match.group(1), path

    def remove(self, path: Path) -> None:
        """Delete one file of the store (an orphan) durably."""
        path.unlink(missing_ok=True)
        self._fsync_dir(path.parent)

    @staticmethod
    def _fsync_dir(path: Path) -> None:
        fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)

    def init(self) -> None:
        for area in (self.raw_dir, self.quarantine_dir):
            self._ensure_dir(area)
