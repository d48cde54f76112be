"""What an alert says: the categories, the payloads (no personal data, R12) and the Japanese texts.

Pure functions only. A payload holds the record id, the received time (JST), the size, the status,
reason codes, the signature name and the attachments' detected kinds and verdicts, never the
sender's address or name, the subject, the body or any attachment. File names are personal data
too (意見書_山田太郎.docx): they are never stored in the outbox and are added at send time only when
`[alerts] include_filenames = true`. Every string that did not come from our own code (signature
names, kinds, file names) passes `clean()` before it reaches a text.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import unicodedata
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from daemon import jst

REJECTED = "rejected"
QUARANTINED = "quarantined"
HELD_TOO_LONG = "held_too_long"
SCANNER_DOWN = "scanner_down"
MAILBOX_DOWN = "mailbox_down"
STORAGE_ERROR = "storage_error"
CATEGORIES = (REJECTED, QUARANTINED, HELD_TOO_LONG, SCANNER_DOWN, MAILBOX_DOWN, STORAGE_ERROR)
TEST = "test"  # `intake alerts test`: never stored

# Kinds within a category.
KIND_RECORD = "record"  # a record was rejected / quarantined
KIND_DOOR_REFUSAL = "door_refusal"  # LMTP/SMTP 552 before any record existed
KIND_HELD = "held"
KIND_DOWN = "down"
KIND_RECOVERED = "recovered"
KIND_SIGNATURES_OLD = "signatures_old"
KIND_FAILED = "failed"

SUBJECT_PREFIX = "【意見受付】"

REASON_LABELS = {
    "too_large": "メールのサイズが上限を超えています",
    "attachment_not_allowed": "認められていない形式の添付ファイルがあります",
    "attachment_type_mismatch": "添付ファイルの拡張子と中身が一致しません",
    "attachment_macro": "添付ファイルにマクロが含まれています",
    "attachment_encrypted": "添付ファイルがパスワードで保護されています",
    "virus": "ウイルスが検出されました",
    "scan_unavailable": "ウイルス検査ができませんでした",
    "scan_incomplete": "ウイルス検査を最後まで行えませんでした",
    "malformed": "メールとして読み取れません",
    "processing_failed": "処理中のエラーが繰り返し発生しました",
}
STATUS_LABELS = {"rejected": "拒否", "quarantined": "隔離", "held": "保留", "accepted": "受付", "duplicate": "重複"}
CATEGORY_LABELS = {
    REJECTED: "拒否",
    QUARANTINED: "ウイルス検出・隔離",
    HELD_TOO_LONG: "長時間の保留",
    SCANNER_DOWN: "ウイルス検査（clamd）",
    MAILBOX_DOWN: "受信メールボックス",
    STORAGE_ERROR: "記録の保存の失敗",
    TEST: "テスト",
}
STORAGE_LABELS = {"database": "データベース", "raw_store": "原本保存領域（raw store）"}
MAILBOX_PROBLEMS = {"unreachable": "接続できません", "login_refused": "ログインが拒否されています",
                    "auth_failed": "認証（ログインまたは OAuth 2.0 トークン）が通りません"}


@dataclass(frozen=True)
class AlertDraft:
    """An alert about to enter the outbox."""

    category: str
    kind: str
    payload: dict[str, Any]
    record_id: int | None = None
    dedup_key: str | None = None

    def for_record(self, record_id: int) -> AlertDraft:
        """The same alert, naming the record it is about (known only once the record has its id)."""
        return dataclasses.replace(self, record_id=record_id, payload={**self.payload, "record": record_id})


@dataclass(frozen=True)
class Item:
    """An alert as the sender reads it back from the outbox."""

    alert_id: int
    category: str
    kind: str
    created_at: dt.datetime
    payload: dict[str, Any]
    filenames: tuple[str, ...] = ()  # only when include_filenames is on


@dataclass(frozen=True)
class Rendered:
    """One message to staff: a single alert or a digest; `id` is what a receiver deduplicates on."""

    id: str
    category: str
    mode: str  # single | digest | test
    subject: str
    text: str
    records: tuple[int, ...] = ()
    facts: dict[str, Any] = field(default_factory=dict)


# -- cleaning -------------------------------------------------------------------------------------------
def clean(value: Any, limit: int = 120) -> str:
    """A short one-line string: control and format characters (CR, LF, NUL, bidi overrides, U+2028 …)
    become spaces, so nothing from outside can add a line, a header or a fake field to a text."""
    text = "".join(" " if unicodedata.category(c)[0] in "CZ" and c != " " else c for c in str(value))
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


def jst_text(value: str | dt.datetime | None) -> str:
    if value is None:
        return "不明"
    when = dt.datetime.fromisoformat(value) if isinstance(value, str) else value
    if when.tzinfo is None:
        when = when.replace(tzinfo=dt.UTC)
    return jst.stamp(when, suffix=True)


def jst_iso(value: dt.datetime | None) -> str | None:
    return jst.iso(value)


# -- payloads (no personal data) ------------------------------------------------------------------------
def attachment_facts(parts: Iterable[Any]) -> list[dict[str, Any]]:
    """The detected kind and verdict of each attachment (a Part or an Attachment row), never its name or bytes."""
    out = []
    for part in parts:
        data = getattr(part, "data", None)
        size = len(data) if isinstance(data, bytes | bytearray) else getattr(part, "size", None)
        out.append({
            "position": int(part.position),
            "kind": clean(part.kind, 16),
            "format": clean(part.format, 32),
            "verdict": clean(part.verdict, 16),
            "signature": clean(part.signature) if part.signature else None,
            "size": size,
        })
    return out


def record_payload(
    record_id: int, status: str, received_at: dt.datetime | None, size: int, reasons: Sequence[str],
    virus: str | None, attachments: Iterable[Any], source: str,
) -> dict[str, Any]:
    return {
        "record": record_id,
        "status": status,
        "received_at": jst_iso(received_at),
        "size": int(size),
        "reasons": [clean(r, 32) for r in reasons],
        "signature": clean(virus) if virus else None,
        "attachments": attachment_facts(attachments),
        "source": clean(source, 16),
    }


def record_draft(category: str, payload: dict[str, Any]) -> AlertDraft:
    return AlertDraft(category=category, kind=KIND_RECORD, payload=payload, record_id=payload["record"])


# The statuses that need a person: a record entering one of them raises an alert of that category.
ALERTING_STATUSES = {"rejected": REJECTED, "quarantined": QUARANTINED}


def alert_for_status(status: str, received_at: dt.datetime | None, size: int, reasons: Sequence[str],
                     virus: str | None, attachments: Iterable[Any], source: str,
                     record_id: int | None = None) -> AlertDraft | None:
    """The alert a record raises on entering `status` (None for statuses nobody needs to hear about).
    Decided before the record has its id: the store names the record (`AlertDraft.for_record`) when it
    writes both in one transaction."""
    category = ALERTING_STATUSES.get(status)
    if category is None:
        return None
    payload = record_payload(record_id=record_id or 0, status=status, received_at=received_at, size=size,
                             reasons=reasons, virus=virus, attachments=attachments, source=source)
    payload["record"] = record_id
    return AlertDraft(category=category, kind=KIND_RECORD, payload=payload, record_id=record_id)


def door_refusal_draft(size: int, when: dt.datetime, source: str, limit: int | None = None) -> AlertDraft:
    payload = {"record": None, "status": "rejected", "received_at": jst_iso(when), "size": int(size),
               "reasons": ["too_large"], "signature": None, "attachments": [], "source": clean(source, 16),
               "limit": limit}
    return AlertDraft(category=REJECTED, kind=KIND_DOOR_REFUSAL, payload=payload)


def held_draft(payload: dict[str, Any], minutes: float, since: dt.datetime) -> AlertDraft:
    payload = {**payload, "held_since": jst_iso(since), "minutes": minutes}
    return AlertDraft(category=HELD_TOO_LONG, kind=KIND_HELD, payload=payload, record_id=payload["record"],
                      dedup_key=f"held_too_long:{payload['record']}")


def outage_draft(category: str, kind: str, since: dt.datetime, now: dt.datetime, minutes: float,
                 problem: str | None = None) -> AlertDraft:
    payload = {"since": jst_iso(since), "at": jst_iso(now), "minutes": minutes,
               "duration_s": round((now - since).total_seconds(), 1), "problem": problem}
    return AlertDraft(category=category, kind=kind, payload=payload)


def signatures_draft(version: str, built: dt.datetime, now: dt.datetime, days: float) -> AlertDraft:
    payload = {"version": clean(version), "built": jst_iso(built), "at": jst_iso(now), "days": days,
               "age_days": round((now - built).total_seconds() / 86400, 1)}
    return AlertDraft(category=SCANNER_DOWN, kind=KIND_SIGNATURES_OLD, payload=payload)


def storage_draft(what: str, now: dt.datetime, repeated: int) -> AlertDraft:
    payload = {"what": what if what in STORAGE_LABELS else "unknown", "at": jst_iso(now), "repeated": repeated}
    return AlertDraft(category=STORAGE_ERROR, kind=KIND_FAILED, payload=payload)


# -- texts ----------------------------------------------------------------------------------------------
FOOTER = "この通知には個人情報（差出人の氏名・アドレス、件名、本文、添付ファイル）を含めていません。"


def _reasons_line(reasons: Sequence[str]) -> str:
    return "、".join(f"{r}（{REASON_LABELS.get(r, '—')}）" for r in reasons) or "—"


def _record_block(p: dict[str, Any], filenames: Sequence[str]) -> list[str]:
    lines = [
        f"受付番号: #{p['record']}" if p.get("record") is not None else "受付番号: なし（記録されていません）",
        f"受付日時: {jst_text(p.get('received_at'))}",
        f"サイズ: {int(p.get('size') or 0):,} バイト",
        f"状態: {p.get('status')}（{STATUS_LABELS.get(str(p.get('status')), '—')}）",
        f"理由: {_reasons_line(p.get('reasons') or [])}",
    ]
    if p.get("signature"):
        lines.append(f"検出名: {clean(p['signature'])}")
    atts = p.get("attachments") or []
    if atts:
        lines.append("添付ファイル（検出した種類 → 判定）:")
        for i, a in enumerate(atts):
            sig = f" [{clean(a['signature'])}]" if a.get("signature") else ""
            name = f"  名前: {clean(filenames[i], 80)}" if i < len(filenames) and filenames[i] else ""
            lines.append(f"  {a.get('position')}. {clean(a.get('kind'), 16)}/{clean(a.get('format'), 32)}"
                         f" {int(a.get('size') or 0):,} バイト → {clean(a.get('verdict'), 16)}{sig}{name}")
    return lines


def _single(item: Item) -> tuple[str, list[str]]:
    """(subject after the prefix, body lines) of one alert."""
    p, cat, kind = item.payload, item.category, item.kind
    rid = p.get("record")
    if cat == REJECTED and kind == KIND_DOOR_REFUSAL:
        subject = "大きすぎるメールを受信時に拒否しました（記録なし）"
        body = [
            "メールサーバーからの配送を、サイズの上限を超えるため 552 で拒否しました。",
            "本文を受け取っていないため記録（受付番号）はありません。差出人には送信元のメールサーバーから"
            "エラーが返ります。", "", *_record_block(p, ()),
            *([f"上限: {int(p['limit']):,} バイト"] if p.get("limit") else []), "",
            "次の対応:",
            f"  受付のメールサーバーのログ（{jst_text(p.get('received_at'))} ごろ）で差出人を確認し、"
            "意見が受け付けられていないことと、20MB 以下に分けて再送できることを連絡してください。",
        ]
    elif cat == REJECTED:
        subject = f"受付番号 #{rid} を拒否しました（差出人への連絡が必要です）"
        body = [
            "意見募集のメール受付で、次のメールを受け付けず「拒否」として記録しました。",
            "差出人には自動の返信をしていないため、差出人は意見が受け付けられていないことを知りません。", "",
            *_record_block(p, item.filenames), "",
            "次の対応:",
            f"  intake show {rid} で内容を確認し、差出人に連絡してください。",
            "  （「他のファイル形式とする場合は、担当までお問い合わせください」。",
            "  内容に問題がなければ手作業で受け付けます。）",
        ]
    elif cat == QUARANTINED:
        subject = f"ウイルスを検出し隔離しました（受付番号 #{rid}）"
        body = [
            "意見募集のメール受付で、ウイルスを含むメールを受信し、隔離しました。意見の提出を装った攻撃の"
            "証拠です。", "",
            *_record_block(p, item.filenames), "",
            "次の対応:",
            "  添付ファイルや原本を開かないでください。",
            f"  intake show {rid} で記録を確認し、情報セキュリティ担当に報告してください。"
            "原本は証拠として隔離領域に保管されています。",
        ]
    elif cat == HELD_TOO_LONG:
        subject = f"受付番号 #{rid} が {_num(p.get('minutes'))} 分以上保留のままです"
        body = [
            f"次のメールは {jst_text(p.get('held_since'))} から保留（held）のままで、"
            "意見として受け付けられていません。",
            "", *_record_block(p, item.filenames), "",
            "次の対応:",
            "  理由が scan_unavailable なら、ウイルス検査（clamd）が動いているか確認してください"
            "（systemctl status clamav-daemon）。復旧すると自動で再検査されます。",
            f"  理由が processing_failed なら、intake show {rid} で内容を確認してください。",
        ]
    elif cat == SCANNER_DOWN and kind == KIND_DOWN:
        subject = f"ウイルス検査（clamd）に {_num(p.get('minutes'))} 分以上接続できません"
        body = [
            f"{jst_text(p.get('since'))} から clamd に接続できません。",
            "届いたメールは保留（held）として保存され、検査できるまで受け付けられません。", "",
            "次の対応:",
            "  systemctl status clamav-daemon で状態を確認し、必要なら再起動してください。",
            "  復旧すると保留中のメールは自動で再検査されます。復旧したときにも通知します。",
        ]
    elif cat == SCANNER_DOWN and kind == KIND_RECOVERED:
        subject = "ウイルス検査（clamd）が復旧しました"
        body = [
            f"{jst_text(p.get('since'))} から接続できなかった clamd が {jst_text(p.get('at'))} に復旧しました"
            f"（停止していた時間: 約 {_duration(p.get('duration_s'))}）。", "",
            "次の対応:",
            "  保留中のメールは自動で再検査されます。intake log --status held で残りを確認してください。",
        ]
    elif cat == SCANNER_DOWN and kind == KIND_SIGNATURES_OLD:
        subject = f"ウイルス定義が {_num(p.get('days'))} 日以上更新されていません"
        body = [
            f"clamd のウイルス定義の日付は {jst_text(p.get('built'))} です（{p.get('age_days')} 日前）。",
            f"clamd の版: {clean(p.get('version'))}", "",
            "次の対応:",
            "  systemctl status clamav-freshclam と freshclam のログを確認し、定義を更新してください。",
        ]
    elif cat == MAILBOX_DOWN and kind == KIND_DOWN:
        problem = MAILBOX_PROBLEMS.get(str(p.get("problem")), "接続できません")
        subject = f"受信メールボックスに {_num(p.get('minutes'))} 分以上{problem}"
        body = [
            f"{jst_text(p.get('since'))} から受信メールボックスに{problem}。",
            "届いた意見はメールボックスにたまったままで、読み込まれていません。", "",
            "次の対応:",
            *(["  原因は認証です。intake check で理由（AADSTS コードなど）を確認し、アプリの登録・管理者の同意・",
               "  クライアントシークレットの期限・メールボックスの権限を確認してください（README の OAuth 2.0 の節）。"]
              if p.get("problem") == "auth_failed" else
              ["  メールサーバーの状態、ネットワーク、アカウントのパスワードを確認してください。"]),
            "  復旧すると自動で読み込みを再開します。復旧したときにも通知します。",
        ]
    elif cat == MAILBOX_DOWN:
        subject = "受信メールボックスへの接続が復旧しました"
        body = [
            f"{jst_text(p.get('since'))} から続いていた受信メールボックスの障害が {jst_text(p.get('at'))} に"
            f"復旧しました（約 {_duration(p.get('duration_s'))}）。", "",
            "次の対応:", "  特にありません。たまっていたメールは自動で読み込まれます。",
        ]
    elif cat == STORAGE_ERROR:
        what = STORAGE_LABELS.get(str(p.get("what")), "保存先")
        subject = f"記録の保存に失敗しています（{what}）"
        repeated = int(p.get("repeated") or 0)
        body = [
            f"{jst_text(p.get('at'))} に{what}への書き込みに失敗しました"
            + (f"（前回の通知から {repeated} 回）" if repeated else "") + "。",
            "受け取れなかったメールはサーバー側に残り、あとで再処理されます（LMTP は一時エラーを返します）。", "",
            "次の対応:",
            "  ディスクの空き容量、データベースサーバーの状態、保存先の権限を確認してください。",
            "  intake db upgrade が済んでいるか、journalctl -u intake でエラーを確認してください。",
        ]
    elif cat == TEST:
        subject = "通知のテスト"
        body = ["intake alerts test による通知のテストです。",
                "このメッセージが届けば、この経路の設定は正しく動いています。", "", "次の対応:", "  特にありません。"]
    else:
        subject = f"通知（{clean(cat, 24)}/{clean(kind, 24)}）"
        body = [f"{k}: {clean(v)}" for k, v in sorted(p.items()) if not isinstance(v, dict | list)]
    return subject, body


def _num(value: Any) -> str:
    number = float(value or 0)
    return str(int(number)) if number == int(number) else f"{number:g}"


def _duration(seconds: Any) -> str:
    s = int(float(seconds or 0))
    if s < 120:
        return f"{s} 秒"
    if s < 7200:
        return f"{s // 60} 分"
    return f"{s // 3600} 時間 {s % 3600 // 60} 分"


def render_single(alert_ref: str, item: Item) -> Rendered:
    subject, body = _single(item)
    text = "\n".join([*body, "", FOOTER, f"通知ID: {alert_ref}"])
    rid = item.payload.get("record")
    return Rendered(id=alert_ref, category=item.category, mode="single", subject=SUBJECT_PREFIX + subject,
                    text=text, records=(int(rid),) if isinstance(rid, int) else (),
                    facts={"kind": item.kind, **_facts(item.payload)})


def _facts(p: dict[str, Any]) -> dict[str, Any]:
    keep = ("record", "status", "received_at", "size", "reasons", "signature", "attachments", "since", "at",
            "minutes", "days", "problem", "what", "duration_s", "held_since", "built", "age_days")
    return {k: p[k] for k in keep if k in p}


DIGEST_IDS_SHOWN = 100

DIGEST_NEXT = {
    REJECTED: "intake log --status rejected で一覧を確認し、それぞれの差出人に連絡してください。",
    QUARANTINED: "添付ファイルや原本を開かないでください。攻撃が続いている可能性があります。"
                 "intake log --status quarantined で一覧を確認し、情報セキュリティ担当に報告してください。",
    HELD_TOO_LONG: "ウイルス検査（clamd）の状態を確認してください。intake log --status held で一覧を確認できます。",
    SCANNER_DOWN: "systemctl status clamav-daemon で状態を確認してください。",
    MAILBOX_DOWN: "メールサーバーの状態とアカウントを確認してください。",
    STORAGE_ERROR: "ディスクの空き容量とデータベースサーバーの状態を確認してください。",
}


def render_digest(alert_ref: str, items: Sequence[Item], window_seconds: float,
                  burst_total: int | None = None) -> Rendered:
    """Many alerts of one category as one message, with counts by reason (and by signature)."""
    if len(items) == 1:
        one = render_single(alert_ref, items[0])
        return Rendered(id=one.id, category=one.category, mode="digest", subject=one.subject, text=one.text,
                        records=one.records, facts={**one.facts, "count": 1})
    category = items[0].category
    by_reason: Counter[str] = Counter()
    by_signature: Counter[str] = Counter()
    by_kind: Counter[str] = Counter()
    records: list[int] = []
    for item in items:
        by_kind[item.kind] += 1
        for reason in item.payload.get("reasons") or []:
            by_reason[str(reason)] += 1
        if item.payload.get("signature"):
            by_signature[clean(item.payload["signature"])] += 1
        if isinstance(item.payload.get("record"), int):
            records.append(int(item.payload["record"]))
    first, last = min(i.created_at for i in items), max(i.created_at for i in items)
    label = CATEGORY_LABELS.get(category, category)
    subject = f"{SUBJECT_PREFIX}まとめ：{label} {len(items)} 件（{jst_text(first)[11:16]}〜{jst_text(last)[11:16]}）"
    lines = [
        f"短い間に「{label}」の通知が続いたため、{_duration(window_seconds)}ごとにまとめてお知らせします。",
        f"この通知の件数: {len(items)} 件",
    ]
    if burst_total is not None and burst_total > len(items):
        lines.append(f"この一連の通知の合計: {burst_total} 件（うち {burst_total - len(items)} 件は通知済み）")
    lines.append(f"期間: {jst_text(first)} 〜 {jst_text(last)}")
    if by_reason:
        lines.append("理由別の件数:")
        lines += [f"  {r}（{REASON_LABELS.get(r, '—')}）: {n} 件" for r, n in by_reason.most_common()]
    if by_signature:
        lines.append("検出名別の件数:")
        lines += [f"  {s}: {n} 件" for s, n in by_signature.most_common(20)]
    if len(by_kind) > 1 or not by_reason:
        lines.append("種類別の件数:")
        lines += [f"  {k}: {n} 件" for k, n in by_kind.most_common()]
    if records:
        shown = ", ".join(f"#{r}" for r in records[:DIGEST_IDS_SHOWN])
        more = f" ほか {len(records) - DIGEST_IDS_SHOWN} 件" if len(records) > DIGEST_IDS_SHOWN else ""
        lines.append(f"受付番号: {shown}{more}")
    lines += ["", "次の対応:", "  " + DIGEST_NEXT.get(category, "intake alerts list で確認してください。"),
              "", FOOTER, f"通知ID: {alert_ref}"]
    facts = {"count": len(items), "burst_total": burst_total, "by_reason": dict(by_reason),
             "by_signature": dict(by_signature), "by_kind": dict(by_kind), "first": jst_iso(first),
             "last": jst_iso(last)}
    return Rendered(id=alert_ref, category=category, mode="digest", subject=subject, text="\n".join(lines),
                    records=tuple(records), facts=facts)


def render_test(alert_ref: str, now: dt.datetime) -> Rendered:
    item = Item(alert_id=0, category=TEST, kind=TEST, created_at=now, payload={"at": jst_iso(now)})
    one = render_single(alert_ref, item)
    return Rendered(id=alert_ref, category=TEST, mode="test", subject=one.subject, text=one.text, facts={})
