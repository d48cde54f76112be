"""Patterns of personal data in free text: mail addresses, phone numbers, postal codes and street addresses.

The comment stage uses them to read an unlabelled signature block (`signature`); the public export
(daemon/staff/export.py) masks every match, whatever the labels said. Japanese forms (full- and half-width
digits, 〒, 都道府県・市区町村・丁目・番地) and romanised Japanese addresses (``1-2-3 Roppongi, Minato-ku,
Tokyo``) are covered; international phone numbers (``+81 3-1234-5678``) too.
"""

from __future__ import annotations

import re
from collections.abc import Iterator

PREFECTURES = (
    "北海道", "青森県", "岩手県", "宮城県", "秋田県", "山形県", "福島県", "茨城県", "栃木県", "群馬県", "埼玉県",
    "千葉県", "東京都", "神奈川県", "新潟県", "富山県", "石川県", "福井県", "山梨県", "長野県", "岐阜県", "静岡県",
    "愛知県", "三重県", "滋賀県", "京都府", "大阪府", "兵庫県", "奈良県", "和歌山県", "鳥取県", "島根県", "岡山県",
    "広島県", "山口県", "徳島県", "香川県", "愛媛県", "高知県", "福岡県", "佐賀県", "長崎県", "熊本県", "大分県",
    "宮崎県", "鹿児島県", "沖縄県",
)  # fmt: skip
ROMAN_PREFECTURES = (
    "Hokkaido", "Aomori", "Iwate", "Miyagi", "Akita", "Yamagata", "Fukushima", "Ibaraki", "Tochigi", "Gunma",
    "Saitama", "Chiba", "Tokyo", "Kanagawa", "Niigata", "Toyama", "Ishikawa", "Fukui", "Yamanashi", "Nagano", "Gifu",
    "Shizuoka", "Aichi", "Mie", "Shiga", "Kyoto", "Osaka", "Hyogo", "Nara", "Wakayama", "Tottori", "Shimane",
    "Okayama", "Hiroshima", "Yamaguchi", "Tokushima", "Kagawa", "Ehime", "Kochi", "Fukuoka", "Saga", "Nagasaki",
    "Kumamoto", "Oita", "Miyazaki", "Kagoshima", "Okinawa",
)  # fmt: skip

_D = "[0-9０-９]"
_DASH = "[-‐‑‒–—―−－ーｰ]"
_NUM = f"(?:{_D}{{1,6}}|[一二三四五六七八九十〇]{{1,4}})"
_SEP = "[ \\t\u3000]"

_LOCAL = r"[A-Za-z0-9._%+\-Ａ-Ｚａ-ｚ０-９．＿－]+"
_LABEL = r"[A-Za-z0-9\-Ａ-Ｚａ-ｚ０-９－]+"
# starts only where a run of address characters starts: a long run without "@" is scanned once, not once per
# character
MAIL_RE = re.compile(rf"(?<![A-Za-z0-9._%+\-Ａ-Ｚａ-ｚ０-９．＿－]){_LOCAL}[ \t]*[@＠][ \t]*{_LABEL}(?:[.．]{_LABEL})+")
# A candidate phone number: a leading 0 or +, then digit groups with short separators; kept when it holds
# 10–15 digits (Japanese numbers have 10 or 11, international ones up to 15).
_PHONE_CAND = re.compile(
    rf"(?<![0-9０-９A-Za-z.+＋])(?:[+＋]{_SEP}?[0-9０-９]{{1,4}}|[0０][0-9０-９]*)"
    rf"(?:(?:{_SEP}|{_DASH}|[().（）．・]){{1,3}}[0-9０-９]+){{0,6}}(?![0-9０-９])"
)
POSTAL_RE = re.compile(
    rf"〒{_SEP}*{_D}{{3}}{_DASH}?{_D}{{4}}(?!{_D})|(?<![0-9０-９\-－]){_D}{{3}}{_DASH}{_D}{{4}}(?![0-9０-９\-－])"
)
# 都道府県・市区町村・丁目・番地: a municipality (after an optional prefecture), a few place-name characters and a
# block number (1丁目2番3号, 1-2-3, 4番地), then the building up to a space or punctuation.
# Every quantifier below is bounded and no two adjacent pieces can take the same characters in many ways, so a
# match costs at most a constant per starting position (a run of 市市市… must not backtrack exponentially).
_PLACE = "(?:[\u4e00-\u9fff々〆ヵヶケ\u30a1-\u30fa\u30fcがのつ]|[0-9０-９]{1,4}[条線丁])"
_MUNI = f"{_PLACE}{{1,8}}?[市区町村郡](?:{_PLACE}{{1,6}}?[区町村郡])?"
_BLOCK = (
    f"(?:{_NUM}丁目(?:{_SEP}*{_NUM}(?:番地?|{_DASH}))?(?:{_SEP}*{_NUM}号?)?"
    f"|{_NUM}番地?(?:{_SEP}*{_NUM}号?)?"
    f"|{_D}{{1,6}}(?:{_DASH}{_D}{{1,6}}){{1,3}}号?)"
)
_PREF = "(?:" + "|".join(PREFECTURES) + ")"
_BUILDING = "[^\\s、。,，;；:：()（）「」『』【】\u3041-\u3096]{0,30}"  # the building: no hiragana (に住む)
ADDRESS_JA_RE = re.compile(
    f"{_PREF}?{_MUNI}{_PLACE}{{0,12}}?{_SEP}{{0,2}}{_BLOCK}{_BUILDING}"
    f"|{_PREF}{_MUNI}"
    f"|{_PLACE}{{0,6}}?{_NUM}丁目(?:{_SEP}*{_NUM}番地?)?(?:{_SEP}*{_NUM}号)?"
)
_RWORD = "[A-Z][a-z]+(?:[- ][A-Z][a-z]+)?"
_RPREF = "(?:" + "|".join(ROMAN_PREFECTURES) + ")(?:-(?:to|fu|ken))?"
_RNUM = r"[0-9]{1,5}(?:-[0-9]{1,5}){1,3}"
_RTAIL = rf"(?:,?[ \t]{{0,3}}(?:{_RPREF}|Japan|JAPAN|[0-9]{{3}}-[0-9]{{4}})\b){{0,4}}"
ADDRESS_ROMAN_RE = re.compile(
    # 1-2-3 Roppongi, Minato-ku, Tokyo 106-0032 / Minato City, Tokyo
    rf"(?<![0-9A-Za-z\-])(?:(?:{_RNUM}|[0-9]{{1,5}}),?[ \t]{{1,3}})?(?:{_RWORD},?[ \t]{{1,3}}){{0,3}}"
    rf"(?:[A-Z][a-z]+-(?:ku|shi|cho|machi|gun|mura|son|ken|fu|to)\b|[A-Z][a-z]+[ \t](?:City|Ward|Town|Village)\b)"
    rf"{_RTAIL}"
    # 1-2-3 Roppongi, Tokyo
    rf"|(?<![0-9A-Za-z\-]){_RNUM},?[ \t]{{1,3}}(?:{_RWORD},?[ \t]{{1,3}}){{0,3}}{_RPREF}\b{_RTAIL}"
)


def _digits(s: str) -> int:
    return sum(ch.isdigit() for ch in s)


def phone_spans(text: str) -> Iterator[tuple[int, int]]:
    """Spans of phone numbers: 03-1234-5678, ０９０（１２３４）５６７８, 0312345678, +81 3 1234 5678 …"""
    for m in _PHONE_CAND.finditer(text):
        s = m.group().rstrip(" \t\u3000-‐－ー−().（）．・")
        if 10 <= _digits(s) <= 15 and (_digits(s) >= 11 or not s.startswith(("+", "＋"))):
            yield m.start(), m.start() + len(s)


def spans(text: str) -> list[tuple[int, int]]:
    """Every span of personal data in `text` (mail, phone, postal code, street address), merged, in order."""
    found: list[tuple[int, int]] = [m.span() for m in MAIL_RE.finditer(text)]
    found.extend(phone_spans(text))
    for rx in (POSTAL_RE, ADDRESS_JA_RE, ADDRESS_ROMAN_RE):
        found.extend(m.span() for m in rx.finditer(text) if m.end() > m.start())
    found.sort()
    merged: list[tuple[int, int]] = []
    for a, b in found:
        if merged and a <= merged[-1][1]:
            merged[-1] = (merged[-1][0], max(b, merged[-1][1]))
        else:
            merged.append((a, b))
    return merged


def is_address(text: str) -> bool:
    """Whether a line is (mostly) a street address."""
    t = text.strip()
    for rx in (ADDRESS_JA_RE, ADDRESS_ROMAN_RE):
        m = rx.search(t)
        if m and (m.end() - m.start()) * 2 >= len(t):
            return True
    return False
