"""The limits under which the classifier opens containers itself, and how a stop becomes a detail.

The deadline and the bounded zip are the shared guards of ``daemon.guards`` (the extractors use
them too); here they get the classifier's numbers and its ``limits:...`` / ``corrupt:...`` details.
"""

from __future__ import annotations

from dataclasses import dataclass

from daemon.guards import BoundedZip, Deadline, StopCode, ZipLimits

# A deflated member larger than this whose ratio is above _MAX_RATIO is treated as a bomb.
_RATIO_MIN_SIZE = 1024 * 1024
_MAX_RATIO = 200


@dataclass(frozen=True)
class ContainerLimits:
    max_members: int = 10_000  # zip entries / OLE2 directory entries
    max_uncompressed: int = 200 * 1024 * 1024  # total declared uncompressed bytes of a zip
    max_member_read: int = 4 * 1024 * 1024  # at most this many bytes decompressed from one member we read
    max_depth: int = 2  # nesting of containers we open ourselves
    max_seconds: float = 10.0  # wall time budget per part (checked between steps)

    @property
    def zip(self) -> ZipLimits:
        """The zip guard's numbers for classifying.

        Stricter than the extractors' (daemon.extract.ExtractLimits.zip) on purpose: to decide a
        type we read only small XML parts and the heads of embedded OLE files, so one member is
        capped at max_member_read and an extreme compression ratio is a bomb; an extractor reads
        whole document parts and caps only the member count and the total.
        """
        return ZipLimits(
            max_members=self.max_members,
            max_uncompressed=self.max_uncompressed,
            max_member_read=self.max_member_read,
            max_ratio=_MAX_RATIO,
            ratio_min_size=_RATIO_MIN_SIZE,
        )


class _Stop(Exception):  # internal control flow, never escapes classify()
    """Analysis stops with a named reason (limits:..., corrupt:...).

    The one place it does escape detection is a deadline check outside any container; classify()
    then names its class in ``classify_error:_Stop``, which is why the class keeps this name.
    """

    def __init__(self, detail: str) -> None:
        super().__init__(detail)
        self.detail = detail


# The guards' stop codes as details. The bounded zip is only used on zips here, so whatever is
# broken about it (an encrypted member we were asked to read included) is "corrupt:zip".
_DETAIL_OF_STOP: dict[StopCode, str] = {
    "time": "limits:time",
    "members": "limits:members",
    "uncompressed": "limits:uncompressed",
    "ratio": "limits:ratio",
    "member_read": "limits:member_read",
    "corrupt": "corrupt:zip",
    "encrypted": "corrupt:zip",
}


def classify_stop(code: StopCode) -> _Stop:
    return _Stop(_DETAIL_OF_STOP[code])


def start_deadline(limits: ContainerLimits) -> Deadline:
    """The wall-time budget of one part; a check after it has passed stops with limits:time."""
    return Deadline(limits.max_seconds, classify_stop)


def open_zip(data: bytes, limits: ContainerLimits, deadline: Deadline) -> BoundedZip:
    """The shared bounded zip with the classifier's numbers and details."""
    return BoundedZip(data, limits.zip, deadline, classify_stop)
