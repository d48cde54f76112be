"""Attachment classifier: what a part IS (by content) and whether the consultation allows it.

A pure function over bytes and the rules' ``[attachments.kinds]`` table. It looks inside
containers itself (zip/OOXML, OLE2) under explicit limits, asks olevba about macros and
msoffcrypto about legacy encryption, and never trusts the file name or the declared MIME type
for the type. The file name only supplies the extension that the policy is matched against.

Never raises: an unexpected failure is ``not_allowed`` with ``classify_error:<ExceptionClass>``.

The package, in the order a part goes through it:
- ``detect``   what the bytes are: dispatches to ``ole`` (OLE2), ``ooxml`` (zip, OOXML, ODF),
               ``markup`` and ``text``, under ``limits`` (the shared guards of daemon.guards);
- ``content``  the plain data detection hands on (``Content``) and the answer (``Classification``);
- ``policy``   the decision: content + extension + allowed kinds → verdict, pure.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from .content import Classification
from .detect import detect, libmagic_mime
from .limits import ContainerLimits
from .policy import decide, extension

__all__ = ["Classification", "ContainerLimits", "classify"]

_DEFAULT_LIMITS = ContainerLimits()  # frozen: one shared default is safe


def classify(
    data: bytes,
    filename: str | None,
    declared_mime: str | None,
    allowed: Mapping[str, Sequence[str]],
    limits: ContainerLimits = _DEFAULT_LIMITS,
) -> Classification:
    """Decide by content what ``data`` is and whether ``allowed`` permits it.

    ``declared_mime`` is accepted for the pipeline's sake but does not decide anything: the type
    comes from the bytes, the policy from the extension of ``filename``.
    """
    del declared_mime  # deliberately unused: never trust the sender's label for the type
    mime = "application/octet-stream"
    try:
        data = bytes(data)
        mime = libmagic_mime(data)
        if not data:
            return Classification("other", "empty", mime, "not_allowed", "empty")
        content = detect(data, mime, limits)
        return decide(content, mime, extension(filename), allowed)
    except Exception as exc:  # the pipeline must never see an exception from here
        return Classification("other", "unknown", mime, "not_allowed", f"classify_error:{type(exc).__name__}")
