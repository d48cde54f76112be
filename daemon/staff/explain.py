"""Each status, reason, flag and attachment verdict in words a member of staff reads: what it means, in one
Japanese sentence, and what to do next. The web application and `intake show` print the same texts.

A code not listed here (a newer one) is shown as the code itself, never hidden (`explain` falls back).
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Explanation:
    code: str
    label: str  # a few words, for a badge or a table cell
    text: str  # one sentence: what it means
    next: str  # what to do next ("" when nothing is to be done)


STATUS_LABELS = {
    "accepted": "受付済",
    "rejected": "受付不可",
    "quarantined": "隔離（ウイルス）",
    "held": "保留",
    "duplicate": "重複",
}

STATUS = {
    "accepted": Explanation("accepted", "受付済", "意見として受け付けました。", ""),
    "rejected": Explanation(
        "rejected", "受付不可", "規則に合わないため受け付けていません（メールは保存されています）。",
        "理由を確認し、差出人に連絡するか、内容を確認のうえ「受付にする」で受け付けてください。"),
    "quarantined": Explanation(
        "quarantined", "隔離（ウイルス）", "ウイルスが見つかったため隔離しました。",
        "添付ファイルは開かず、差出人に別の方法での再提出を依頼してください。"),
    "held": Explanation(
        "held", "保留", "ウイルス検査ができなかったなどの理由で、まだ判定していません。",
        "自動で再試行されます。長く続く場合は「再試行」を押すか、管理者に連絡してください。"),
    "duplicate": Explanation(
        "duplicate", "重複", "以前に受け付けたメールと同じ内容の再送です（集計・出力には含めません）。", ""),
}

REASONS = {
    "too_large": Explanation(
        "too_large", "容量超過", "メールが20MBの上限を超えていたため、開かずに受付不可としました。",
        "差出人に、ファイルを分けるか圧縮せずに容量を減らして再送するよう連絡してください。"),
    "attachment_not_allowed": Explanation(
        "attachment_not_allowed", "対象外の添付形式",
        "Word・Excel・テキスト・一太郎以外の添付ファイル（PDFなど）が付いています。",
        "差出人に指定の形式での再提出を依頼するか、内容を確認して「受付にする」を選んでください。"),
    "attachment_type_mismatch": Explanation(
        "attachment_type_mismatch", "拡張子と中身の不一致", "添付ファイルの名前（拡張子）と中身の形式が一致しません。",
        "不審なファイルの可能性があります。開かずに差出人へ確認してください。"),
    "attachment_macro": Explanation(
        "attachment_macro", "マクロ付き", "添付ファイルにマクロが含まれています。",
        "差出人にマクロを含まない形式での再提出を依頼してください。"),
    "attachment_encrypted": Explanation(
        "attachment_encrypted", "パスワード付き", "添付ファイルにパスワードが掛かっていて検査も読み取りもできません。",
        "差出人にパスワードを外したファイルでの再提出を依頼してください。"),
    "virus": Explanation(
        "virus", "ウイルス", "ウイルス検査でウイルスが見つかりました。",
        "添付ファイルは開かず、差出人に別の方法での再提出を依頼してください。"),
    "scan_unavailable": Explanation(
        "scan_unavailable", "検査不能", "ウイルス検査の仕組み（clamd）に接続できず、検査できませんでした。",
        "自動で再試行されます。続く場合は管理者に clamd の状態を確認してもらってください。"),
    "scan_incomplete": Explanation(
        "scan_incomplete", "検査未完了", "ファイルが大きすぎるなどの理由で、ウイルス検査を最後まで行えませんでした。",
        "安全を確認できないため、差出人に確認のうえ判断してください。"),
    "malformed": Explanation(
        "malformed", "メールとして読めない", "メールの形式が壊れていて、内容を読み取れませんでした。",
        "差出人に再送を依頼してください。"),
    "malformed_structure": Explanation(
        "malformed_structure", "構造の上限超過",
        "メールの構造が上限を超えていました（入れ子が深すぎる、部品や見出し行が多すぎる、見出しの1行が長すぎる）。"
        "開かずに受付不可としました（元のメールは保存されています）。",
        "不審なメールの可能性があります。必要なら差出人に通常の形式での再送を依頼してください。"),
    "processing_failed": Explanation(
        "processing_failed", "処理失敗", "このメールの処理が繰り返し失敗しました（元のメールは保存されています）。",
        "管理者に連絡し、「再試行」で処理し直すか、差出人に再送を依頼してください。"),
    "staff_rejected": Explanation(
        "staff_rejected", "職員が受付不可", "職員が確認のうえ受付不可としました（迷惑メールなど）。",
        "判断の記録（履歴）にある理由を確認してください。"),
}

FLAGS = {
    "early": Explanation("early", "期間前", "意見募集期間の開始前に届きました。",
                         "取り扱うかどうかを担当者で判断してください。"),
    "late": Explanation("late", "期限後", "意見募集の締切（必着）の後に届きました。",
                        "取り扱うかどうかを担当者で判断してください。"),
    "received_at_uncertain": Explanation(
        "received_at_uncertain", "受信時刻不明", "受信時刻が分からなかったため、取り込んだ時刻を受付日時にしています。",
        "期限の判断が必要な場合は、メールサーバの記録で受信時刻を確認してください。"),
    "not_japanese": Explanation("not_japanese", "日本語以外", "意見の本文が主に日本語以外で書かれています。",
                                "内容を確認し、取り扱いを判断してください。"),
    "missing_name": Explanation("missing_name", "氏名なし", "意見書に氏名（法人・団体は名称）がありません。",
                                "必要に応じて差出人に確認してください。"),
    "missing_address": Explanation("missing_address", "住所なし", "意見書に住所（法人・団体は所在地）がありません。",
                                   "必要に応じて差出人に確認してください。"),
    "missing_contact": Explanation("missing_contact", "連絡先なし", "電話番号もメールアドレスも分かりません。",
                                   "確認が必要になっても連絡できないことに留意してください。"),
    "summary_missing": Explanation("summary_missing", "要旨なし", "1,000字を超える意見に要旨が付いていません。",
                                   "必要に応じて差出人に要旨の提出を依頼してください。"),
    "target_missing": Explanation(
        "target_missing", "資料名なし", "どの資料（本編・別添）への意見かが書かれていない項目があります。",
        "内容から対象を判断するか、差出人に確認してください。"),
    "page_missing": Explanation("page_missing", "ページなし", "該当ページ・箇所が書かれていない項目があります。",
                                "内容から該当箇所を判断してください。"),
    "empty": Explanation("empty", "本文なし", "意見の本文がありません。", "差出人に確認してください。"),
    "extraction_failed": Explanation(
        "extraction_failed", "読み取り失敗", "添付ファイルの文字を読み取れませんでした。",
        "元のファイルをダウンロードして内容を確認してください。"),
    "released": Explanation("released", "確認後受付", "受付不可のメールを、職員が確認のうえ受け付けました。", ""),
    "duplicate_text": Explanation(
        "duplicate_text", "同文", "ほかの提出と同じ文面の意見があります（同文のまとめに使います）。", ""),
}

VERDICTS = {
    "allowed": Explanation("allowed", "受付可能な形式", "受け付けられる形式のファイルです。", ""),
    "not_allowed": Explanation("not_allowed", "対象外の形式", "受け付けない形式のファイルです。",
                               "差出人に指定の形式での再提出を依頼してください。"),
    "type_mismatch": Explanation("type_mismatch", "拡張子と中身の不一致", "名前と中身の形式が一致しません。",
                                 "開かずに差出人へ確認してください。"),
    "macro": Explanation("macro", "マクロ付き", "マクロが含まれています。", "マクロなしでの再提出を依頼してください。"),
    "encrypted": Explanation("encrypted", "パスワード付き", "パスワードが掛かっていて読めません。",
                             "パスワードなしでの再提出を依頼してください。"),
    "infected": Explanation("infected", "ウイルス", "ウイルスが見つかりました。ダウンロードできません。",
                            "開かずに、差出人に別の方法での再提出を依頼してください。"),
}

KINDS = {"individual": "個人", "organization": "法人・団体", "unknown": "不明"}
TARGETS = {"main": "本編", "annex": "別添"}
ACTIONS = {
    "ingest": "受信", "retry": "再試行", "duplicate": "重複", "release": "受付にする", "reject": "受付不可にする",
    "rescan": "再検査", "purge": "元メール削除", "imap_rekey": "メールボックス再採番",
    "superseded": "差し替え", "unsuperseded": "差し替えの取り消し",
}


def explain(code: str, table: dict[str, Explanation]) -> Explanation:
    """The explanation of `code`, or one that shows the code itself (a code newer than this table)."""
    return table.get(code) or Explanation(code, code, code, "")


def reason(code: str) -> Explanation:
    return explain(code, REASONS)


def flag(code: str) -> Explanation:
    return explain(code, FLAGS)


def status(code: str) -> Explanation:
    return explain(code, STATUS)


def verdict(code: str) -> Explanation:
    return explain(code, VERDICTS)


def lines(reasons: list[str], flags: list[str]) -> list[str]:
    """One line per reason and flag: label, sentence, next step (for `intake show`)."""
    out = []
    for e in [reason(c) for c in reasons] + [flag(c) for c in flags]:
        out.append(f"{e.code}（{e.label}）: {e.text}" + (f" → {e.next}" if e.next else ""))
    return out
