"""The consultation's rules (rules/*.toml), loaded and validated at start.

Everything that differs per consultation lives in that file: the window (R2), the size limit (R3),
the allowed kinds and their extensions (R4), the targets (R9), the 要旨 threshold (R8) and the labels
of the 意見書's fields (R7). A bad file is a one-line `RulesError` that names the key and the problem.
"""

from __future__ import annotations

import datetime as dt
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

KNOWN_KINDS = ("word", "excel", "text", "ichitaro")
FIELD_KEYS = (
    "name", "organization", "representative", "address", "postal_code", "phone", "email", "contact_person",
)


class RulesError(ValueError):
    """A rules file that cannot be used; str() is one line: '<file>: <key>: <problem>'."""


@dataclass(frozen=True)
class Rules:
    path: str
    consultation_id: str
    window_start: dt.datetime
    window_end: dt.datetime
    max_message_bytes: int
    summary_threshold: int
    allowed_kinds: dict[str, tuple[str, ...]]
    raw: dict[str, Any]  # the whole parsed file, for the stages that read their own sections

    def window_flag(self, received_at: dt.datetime) -> str | None:
        """R2: 'early' / 'late' against the window (an aware datetime compares correctly in any zone)."""
        if received_at < self.window_start:
            return "early"
        if received_at > self.window_end:
            return "late"
        return None


def _get(data: dict[str, Any], dotted: str) -> Any:
    cur: Any = data
    for part in dotted.split("."):
        if not isinstance(cur, dict) or part not in cur:
            raise RulesError(f"{dotted}: missing")
        cur = cur[part]
    return cur


def _aware(data: dict[str, Any], key: str) -> dt.datetime:
    value = _get(data, key)
    if not isinstance(value, dt.datetime):
        raise RulesError(f"{key}: must be a date-time with an offset, e.g. 2026-01-29T23:59:59+09:00")
    if value.tzinfo is None:
        raise RulesError(f"{key}: needs an explicit offset such as +09:00 (JST)")
    return value


def _positive_int(data: dict[str, Any], key: str) -> int:
    value = _get(data, key)
    if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
        raise RulesError(f"{key}: must be a positive whole number, got {value!r}")
    return value


def _str_list(data: dict[str, Any], key: str) -> list[str]:
    value = _get(data, key)
    if not isinstance(value, list) or not value or not all(isinstance(v, str) and v for v in value):
        raise RulesError(f"{key}: must be a non-empty list of strings")
    return value


def parse_rules(data: dict[str, Any], path: str = "<rules>") -> Rules:
    try:
        cid = _get(data, "consultation.id")
        if not isinstance(cid, str) or not cid:
            raise RulesError("consultation.id: must be a non-empty string")
        start = _aware(data, "window.start")
        end = _aware(data, "window.end")
        if end <= start:
            raise RulesError("window.end: must be after window.start")
        kinds_table = _get(data, "attachments.kinds")
        if not isinstance(kinds_table, dict) or not kinds_table:
            raise RulesError("attachments.kinds: must be a table of kind = [extensions]")
        kinds: dict[str, tuple[str, ...]] = {}
        seen: dict[str, str] = {}
        for kind in kinds_table:
            if kind not in KNOWN_KINDS:
                raise RulesError(f"attachments.kinds.{kind}: unknown kind; known: {', '.join(KNOWN_KINDS)}")
            exts = _str_list(data, f"attachments.kinds.{kind}")
            for ext in exts:
                e = ext.lower().lstrip(".")
                if e in seen:
                    raise RulesError(f"attachments.kinds.{kind}: extension {e!r} is also listed for {seen[e]}")
                seen[e] = kind
            kinds[kind] = tuple(e.lower().lstrip(".") for e in exts)
        for target in ("main", "annex"):
            _str_list(data, f"targets.{target}.aliases")
        for key in FIELD_KEYS:
            _str_list(data, f"fields.{key}")
        for key in ("location", "opinion", "summary"):
            _str_list(data, f"comment.{key}")
        _str_list(data, "submitter.organization_markers")
        _str_list(data, "submitter.anonymity_markers")
        from daemon.stages.comment import CommentRules

        try:
            CommentRules.from_rules(data)
        except ValueError as exc:
            raise RulesError(str(exc)) from None
        return Rules(
            path=path,
            consultation_id=cid,
            window_start=start,
            window_end=end,
            max_message_bytes=_positive_int(data, "limits.max_message_bytes"),
            summary_threshold=_positive_int(data, "limits.summary_threshold_chars"),
            allowed_kinds=kinds,
            raw=data,
        )
    except RulesError as exc:
        raise RulesError(f"{path}: {exc}") from None


def load_rules(path: str | Path) -> Rules:
    p = Path(path)
    try:
        text = p.read_bytes().decode("utf-8")
    except FileNotFoundError:
        raise RulesError(f"{p}: file not found (set INTAKE_RULES or rules = … in the config)") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise RulesError(f"{p}: cannot be read: {exc.__class__.__name__}") from None
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise RulesError(f"{p}: not valid TOML: {exc}") from None
    return parse_rules(data, str(p))
