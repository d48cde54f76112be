"""The plain data between detection and policy: what a part's bytes are (``Content``) and the
classifier's answer (``Classification``)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Classification:
    kind: str  # "word" | "excel" | "text" | "ichitaro" | "other"
    format: str  # fine-grained: "doc", "docx", "xlsx", "jtd", "pdf", "elf", "zip", ...
    mime: str  # libmagic on the WHOLE part
    verdict: str  # "allowed" | "not_allowed" | "type_mismatch" | "macro" | "encrypted"
    detail: str | None = None  # short machine-ish reason; never the file name


@dataclass
class Content:
    """What detection found in the bytes; the policy (policy.decide) turns it into a verdict."""

    kind: str
    format: str
    encrypted: str | None = None  # detail when the content is encrypted
    macro: str | None = None  # detail when the content carries macros
    problem: str | None = None  # limits:... / corrupt:... : could not be judged
    charset: str | None = None  # for text
