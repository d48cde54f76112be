"""Guards for reading untrusted containers: one deadline and one bounded zip.

The classifier (``daemon.stages.classify``) and the extractors (``daemon.extract``) both open
attachments that a sender may have built to hurt us. They share these guards so that a zip bomb or
a slow input is stopped the same way in both. Each caller keeps its own numbers (``ZipLimits``) and
its own words for a stop: a guard names what stopped it with a neutral ``StopCode`` and the caller's
``stop`` function turns that into the caller's exception (classify: a ``limits:...`` detail,
extract: an ``Extraction.error`` code). The exception is raised where the limit is hit, so the
caller's own ``except`` clauses see exactly what they saw before the guards were shared.

A leaf module: it imports nothing from ``daemon``.
"""

from __future__ import annotations

import io
import struct
import time
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

__all__ = ["BoundedZip", "Deadline", "Stop", "StopCode", "ZipDirectory", "ZipLimits", "walk_zip_directory"]

# What stopped a guard. "time": the deadline passed; "members", "uncompressed", "ratio",
# "member_read": a ZipLimits number; "corrupt": the zip's structure is broken; "encrypted": a member
# needs a password.
StopCode = Literal["time", "members", "uncompressed", "ratio", "member_read", "corrupt", "encrypted"]
# The caller's translation of a StopCode into the exception its own code expects.
Stop = Callable[[StopCode], Exception]


class Deadline:
    """Cooperative time check for code that loops over untrusted structures (checked between steps)."""

    def __init__(self, seconds: float, stop: Stop) -> None:
        self.end = time.monotonic() + seconds
        self._stop = stop

    def check(self) -> None:
        if time.monotonic() > self.end:
            raise self._stop("time")


@dataclass(frozen=True)
class ZipLimits:
    """The numbers a BoundedZip enforces; each caller states its own (see its limits type)."""

    max_members: int = 10_000  # entries in the central directory
    max_uncompressed: int = 200 * 1024 * 1024  # total declared uncompressed bytes, and the read budget
    max_member_read: int | None = None  # at most this many bytes from one member; None: the budget only
    # A deflated member larger than ratio_min_size whose ratio is above max_ratio is treated as a
    # bomb; None: no ratio check.
    max_ratio: int | None = None
    ratio_min_size: int = 1024 * 1024


@dataclass
class ZipDirectory:
    """What the central directory declares, counted before zipfile parses it."""

    members: int = 0
    uncompressed: int = 0
    encrypted: bool = False  # some member has the "encrypted" flag


def walk_zip_directory(data: bytes, limits: ZipLimits, deadline: Deadline, stop: Stop) -> ZipDirectory:
    """Walk the central directory ourselves, stopping at the first limit, before zipfile reads it."""
    eocd = data.rfind(b"PK\x05\x06", max(0, len(data) - (22 + 0xFFFF)))
    if eocd < 0 or eocd + 22 > len(data):
        raise stop("corrupt")
    cd_size = struct.unpack_from("<I", data, eocd + 12)[0]
    cd_end = eocd
    z64 = eocd - 20 - 56
    if eocd >= 20 and data[eocd - 20 : eocd - 16] == b"PK\x06\x07" and z64 >= 0:
        if data[z64 : z64 + 4] != b"PK\x06\x06":
            raise stop("corrupt")
        cd_size = struct.unpack_from("<Q", data, z64 + 40)[0]
        cd_end = z64
    pos = cd_end - cd_size
    if pos < 0:
        raise stop("corrupt")
    stats = ZipDirectory()
    while pos < cd_end:
        if data[pos : pos + 4] != b"PK\x01\x02" or pos + 46 > cd_end:
            raise stop("corrupt")
        flags, method = struct.unpack_from("<HH", data, pos + 8)
        csize, usize, n_name, n_extra, n_comment = struct.unpack_from("<IIHHH", data, pos + 20)
        if 0xFFFFFFFF in (csize, usize):
            usize, csize = _zip64_sizes(data[pos + 46 + n_name : pos + 46 + n_name + n_extra], usize, csize)
        stats.members += 1
        if stats.members > limits.max_members:
            raise stop("members")
        stats.uncompressed += usize
        if stats.uncompressed > limits.max_uncompressed:
            raise stop("uncompressed")
        if (
            limits.max_ratio is not None
            and method != 0
            and usize > limits.ratio_min_size
            and usize > limits.max_ratio * max(csize, 1)
        ):
            raise stop("ratio")
        if flags & 0x1:
            stats.encrypted = True
        pos += 46 + n_name + n_extra + n_comment
        if stats.members % 1000 == 0:
            deadline.check()
    return stats


def _zip64_sizes(extra: bytes, usize: int, csize: int) -> tuple[int, int]:
    pos = 0
    while pos + 4 <= len(extra):
        tag, size = struct.unpack_from("<HH", extra, pos)
        if tag == 0x0001:
            body = extra[pos + 4 : pos + 4 + size]
            off = 0
            if usize == 0xFFFFFFFF and off + 8 <= len(body):
                usize = struct.unpack_from("<Q", body, off)[0]
                off += 8
            if csize == 0xFFFFFFFF and off + 8 <= len(body):
                csize = struct.unpack_from("<Q", body, off)[0]
            return usize, csize
        pos += 4 + size
    return usize, csize


class BoundedZip:
    """A zip archive whose members are only read within a total uncompressed budget.

    The central directory is walked and counted before zipfile parses it (a directory of a
    million entries stops at ``max_members``), and the budget is checked against every member's
    declared size before anything is decompressed (a zip bomb fails at once). Each read is capped
    at the declared size + 1 byte, so a member that lies about its size cannot exceed the budget
    either (zipfile itself stops at the declared size and then fails the CRC check).
    """

    def __init__(self, data: bytes, limits: ZipLimits, deadline: Deadline, stop: Stop) -> None:
        self._limits = limits
        self._stop = stop
        self.directory = walk_zip_directory(data, limits, deadline, stop)
        try:
            self.zf = zipfile.ZipFile(io.BytesIO(data))
            infos = self.zf.infolist()
        except (zipfile.BadZipFile, zipfile.LargeZipFile, ValueError, OSError, EOFError) as exc:
            raise stop("corrupt") from exc
        if len(infos) > limits.max_members:  # the walk read the same directory; belt and braces
            raise stop("members")
        total = 0
        for info in infos:
            if info.file_size > limits.max_uncompressed:
                raise stop("uncompressed")
            total += info.file_size
        if total > limits.max_uncompressed:
            raise stop("uncompressed")
        self.budget = limits.max_uncompressed
        self.infos = infos
        self.names = {info.filename: info for info in infos}

    def __enter__(self) -> BoundedZip:
        return self

    def __exit__(self, *exc: object) -> None:
        self.zf.close()

    def has(self, name: str) -> bool:
        return name in self.names

    def read(self, member: str | zipfile.ZipInfo) -> bytes:
        """The whole member (by name or entry), within max_member_read and what is left of the budget."""
        info = self.names.get(member) if isinstance(member, str) else member
        if info is None:
            raise self._stop("corrupt")
        if self._limits.max_member_read is not None and info.file_size > self._limits.max_member_read:
            raise self._stop("member_read")
        if info.file_size > self.budget:
            raise self._stop("uncompressed")
        out = self._read(info, info.file_size + 1)
        if len(out) > info.file_size:
            raise self._stop("corrupt")
        self.budget -= len(out)
        return out

    def head(self, info: zipfile.ZipInfo, n: int) -> bytes:
        """The first ``n`` bytes of a member (a signature check); not counted against the budget."""
        return self._read(info, n)

    def _read(self, info: zipfile.ZipInfo, n: int) -> bytes:
        try:
            with self.zf.open(info) as fh:
                return fh.read(n)
        except (zipfile.BadZipFile, ValueError, OSError, EOFError, NotImplementedError) as exc:
            # NotImplementedError: an unsupported compression method; RuntimeError is encryption
            raise self._stop("corrupt") from exc
        except RuntimeError as exc:
            raise self._stop("encrypted") from exc
