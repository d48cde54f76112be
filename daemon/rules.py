"""The consultation's rules (rules/*.toml), loaded and validated at start: one typed object.

Everything that differs per consultation lives in that file: the window (R2), the size limit (R3),
the allowed kinds and their extensions (R4), the targets (R9), the 要旨 threshold (R8), the labels
of the 意見書's fields (R7) and the organisation / anonymity markers (R11). A bad file is a one-line
`RulesError` that names the key and the problem.

A `Rules` object is immutable and complete: the stages take what they need from it (`rules.comment`
for the comment stage), and a reload (SIGHUP) builds a new object and swaps it in whole, so that no
part of the intake judges a message by half-old rules. Nothing here imports a stage.
"""

from __future__ import annotations

import datetime as dt
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from daemon.outline import Outline, OutlineError, parse_outline

KNOWN_KINDS = ("word", "excel", "text", "ichitaro")
# R7: the submitter fields of the 意見書, each with its labels in [fields].
FIELD_NAMES = (
    "name",
    "organization",
    "representative",
    "address",
    "postal_code",
    "phone",
    "email",
    "contact_person",
)
FIELD_KEYS = FIELD_NAMES
# The labels of the parts of one comment item, in [comment].
COMMENT_LABEL_KINDS = ("location", "opinion", "reason", "summary")
# R6: below this share of Japanese letters (kana + kanji) among all letters the text is flagged.
# Overridable with the optional rules key limits.japanese_min_share.
DEFAULT_JAPANESE_MIN_SHARE = 0.2
# R9a: a body that only sends, greets or signs is a cover letter when the comment is in the attachments.
# The optional table [cover_letter] overrides these (phrases compared after NFKC with whitespace removed).
DEFAULT_COVER_PHRASES = (
    "添付します", "添付いたします", "添付致します", "添付しました", "添付いたしました", "添付させていただ",
    "添付の通り", "添付のとおり", "添付ファイル", "別添のとおり", "別添の通り",
    "送付します", "送付いたします", "送付致します", "送付させていただ", "お送りします", "お送りいたします",
    "提出します", "提出いたします", "提出致します", "提出させていただ", "提出しました",
    "よろしくお願い", "宜しくお願い", "お願い申し上げます", "お世話にな", "御中", "ご査収", "ご確認",
    "失礼いたします", "失礼します", "いつもお世話", "ご担当者様", "担当者様",
)  # fmt: skip
DEFAULT_COVER_MAX_CHARS = 300  # a longer body is never only a cover letter (NFC, whitespace not counted)
# Closing words of a letter that are never a name in an unlabelled signature block.
DEFAULT_CLOSING_WORDS = ("以上", "敬具", "草々", "早々", "拝具", "謹白", "かしこ", "不一", "追伸", "署名")


class RulesError(ValueError):
    """A rules file that cannot be used; str() is one line: '<file>: <key>: <problem>'."""


# -- reading helpers: each raises RulesError('<dotted key>: <problem>') ---------------------------------
def _get(data: Mapping[str, Any], dotted: str) -> Any:
    cur: Any = data
    for part in dotted.split("."):
        if not isinstance(cur, Mapping) or part not in cur:
            raise RulesError(f"{dotted}: missing")
        cur = cur[part]
    return cur


def _table(data: Mapping[str, Any], dotted: str) -> Mapping[str, Any]:
    value = _get(data, dotted)
    if not isinstance(value, Mapping):
        raise RulesError(f"{dotted}: must be a table")
    return value


def _aware(data: Mapping[str, Any], key: str) -> dt.datetime:
    value = _get(data, key)
    if not isinstance(value, dt.datetime):
        raise RulesError(f"{key}: must be a date-time with an offset, e.g. 2026-01-29T23:59:59+09:00")
    if value.tzinfo is None:
        raise RulesError(f"{key}: needs an explicit offset such as +09:00 (JST)")
    return value


def _positive_int(data: Mapping[str, Any], key: str, name: str | None = None) -> int:
    value = _get(data, key)
    if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
        raise RulesError(f"{name or key}: must be a positive whole number, got {value!r}")
    return value


def _str_list(value: Any, key: str) -> list[str]:
    if not isinstance(value, list) or not value or not all(isinstance(v, str) and v.strip() for v in value):
        raise RulesError(f"{key}: must be a non-empty list of non-empty strings")
    return list(value)


# -- bounds on every dimension of a message (issue 16), optional keys of [limits] ------------------------
@dataclass(frozen=True)
class InputLimits:
    """What a hostile message may cost, each an optional key of [limits] with a safe default. A breach of the
    first four rejects the mail (`malformed_structure`); of the others, cuts one text (`extraction_failed`,
    `error: limit:<which>`)."""

    max_mime_depth: int = 32  # multiparts and message/* inside each other
    max_mime_parts: int = 1000  # header blocks: the message's own and every part's
    max_header_fields: int = 1000  # fields in one header block
    max_header_line_bytes: int = 32768  # one physical header line
    max_html_chars: int = 5_000_000  # the HTML body given to text conversion
    max_attachment_chars: int = 1_000_000  # text extracted from one attachment
    max_message_chars: int = 2_000_000  # text of the body and every attachment together
    max_sheet_cells: int = 100_000  # cells read from one sheet of a workbook

    @classmethod
    def from_rules(cls, limits: Mapping[str, Any]) -> InputLimits:
        values: dict[str, int] = {}
        for name in cls.__dataclass_fields__:
            if name in limits:
                values[name] = _positive_int(limits, name, f"limits.{name}")
        return cls(**values)


# -- the comment stage's part (R6–R11) ------------------------------------------------------------------
# eq=False: compared and hashed by identity, so the comment stage can cache its compiled regexes per object.
@dataclass(frozen=True, eq=False)
class CommentRules:
    summary_threshold: int
    targets: dict[str, list[str]]  # target id → its aliases (the label first)
    fields: dict[str, list[str]]
    comment_labels: dict[str, list[str]]
    organization_markers: list[str]
    anonymity_markers: list[str]
    japanese_min_share: float = DEFAULT_JAPANESE_MIN_SHARE
    cover_phrases: tuple[str, ...] = DEFAULT_COVER_PHRASES
    cover_max_chars: int = DEFAULT_COVER_MAX_CHARS
    closing_words: tuple[str, ...] = DEFAULT_CLOSING_WORDS

    @classmethod
    def from_rules(cls, data: Mapping[str, Any]) -> CommentRules:
        """Build from the parsed consultation TOML; RulesError("<key>: <problem>") when invalid."""
        limits = _table(data, "limits")
        threshold = _positive_int(data, "limits.summary_threshold_chars")
        share: Any = limits.get("japanese_min_share", DEFAULT_JAPANESE_MIN_SHARE)
        if isinstance(share, bool) or not isinstance(share, int | float) or not 0 <= share <= 1:
            raise RulesError("limits.japanese_min_share: must be a number between 0 and 1")

        targets_tbl = _table(data, "targets")
        if not targets_tbl:
            raise RulesError("targets: must name at least one draft")
        targets: dict[str, list[str]] = {}
        for name, entry in targets_tbl.items():
            key = f"targets.{name}"
            if not isinstance(entry, Mapping):
                raise RulesError(f"{key}: must be a table")
            aliases = _str_list(_get(entry, "aliases") if "aliases" in entry else _get(data, f"{key}.aliases"),
                                f"{key}.aliases")
            label = entry.get("label")
            if label is not None and (not isinstance(label, str) or not label.strip()):
                raise RulesError(f"{key}.label: must be a non-empty string")
            if label is not None and label not in aliases:
                aliases = [label, *aliases]
            targets[str(name)] = aliases

        # Each required key is named when missing ('fields.name: missing'), before any table-level check.
        fields = {n: _str_list(_get(data, f"fields.{n}"), f"fields.{n}") for n in FIELD_NAMES}
        for name in _table(data, "fields"):
            if name not in FIELD_NAMES:
                raise RulesError(f"fields.{name}: unknown field (known: {', '.join(FIELD_NAMES)})")
        comment_labels = {k: _str_list(_get(data, f"comment.{k}"), f"comment.{k}") for k in COMMENT_LABEL_KINDS}
        org = _str_list(_get(data, "submitter.organization_markers"), "submitter.organization_markers")
        anon = _str_list(_get(data, "submitter.anonymity_markers"), "submitter.anonymity_markers")
        cover = data.get("cover_letter", {})
        if not isinstance(cover, Mapping):
            raise RulesError("cover_letter: must be a table")
        for key in cover:
            if key not in ("phrases", "max_chars", "closing_words"):
                raise RulesError(f"cover_letter.{key}: unknown key (known: phrases, max_chars, closing_words)")
        phrases = tuple(_str_list(cover["phrases"], "cover_letter.phrases")) if "phrases" in cover \
            else DEFAULT_COVER_PHRASES
        closing = tuple(_str_list(cover["closing_words"], "cover_letter.closing_words")) \
            if "closing_words" in cover else DEFAULT_CLOSING_WORDS
        max_chars = _positive_int(data, "cover_letter.max_chars") if "max_chars" in cover else DEFAULT_COVER_MAX_CHARS
        return cls(
            summary_threshold=threshold,
            targets=targets,
            fields=fields,
            comment_labels=comment_labels,
            organization_markers=org,
            anonymity_markers=anon,
            japanese_min_share=float(share),
            cover_phrases=phrases,
            cover_max_chars=max_chars,
            closing_words=closing,
        )


# -- the whole consultation ---------------------------------------------------------------------------
@dataclass(frozen=True, eq=False)
class Rules:
    path: str
    consultation_id: str
    window_start: dt.datetime
    window_end: dt.datetime
    max_message_bytes: int
    allowed_kinds: dict[str, tuple[str, ...]]
    target_labels: dict[str, str]  # target id → the label staff see (本編, 別添)
    comment: CommentRules
    limits: InputLimits = InputLimits()
    title: str = ""  # [consultation] title: the draft's name, for the result document
    outline: Outline = field(default_factory=Outline)  # [outline]: the result document's sections (daemon/outline.py)

    def window_flag(self, received_at: dt.datetime) -> str | None:
        """R2: 'early' / 'late' against the window (an aware datetime compares correctly in any zone)."""
        if received_at < self.window_start:
            return "early"
        if received_at > self.window_end:
            return "late"
        return None


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
            exts = _str_list(_get(data, f"attachments.kinds.{kind}"), f"attachments.kinds.{kind}")
            for ext in exts:
                e = ext.lower().lstrip(".")
                if e in seen:
                    raise RulesError(f"attachments.kinds.{kind}: extension {e!r} is also listed for {seen[e]}")
                seen[e] = kind
            kinds[kind] = tuple(e.lower().lstrip(".") for e in exts)
        for target in ("main", "annex"):
            _str_list(_get(data, f"targets.{target}.aliases"), f"targets.{target}.aliases")
        max_bytes = _positive_int(data, "limits.max_message_bytes")
        comment = CommentRules.from_rules(data)
        labels = {t: str(entry.get("label") or t) for t, entry in _table(data, "targets").items()}
        title = data["consultation"].get("title", "")
        if not isinstance(title, str):
            raise RulesError("consultation.title: must be a string")
        try:
            outline = parse_outline(data, list(labels))
        except OutlineError as exc:
            raise RulesError(str(exc)) from None
        return Rules(
            path=path,
            consultation_id=cid,
            window_start=start,
            window_end=end,
            max_message_bytes=max_bytes,
            allowed_kinds=kinds,
            target_labels=labels,
            comment=comment,
            limits=InputLimits.from_rules(_table(data, "limits")),
            title=title.strip() or cid,
            outline=outline,
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
