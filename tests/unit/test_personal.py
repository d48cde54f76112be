"""Personal data in free text (daemon/stages/comment/personal.py) and the public export's redaction."""

from __future__ import annotations

import datetime as dt

import pytest

from daemon.staff.export import MASK, name_parts, private_values, redact
from daemon.staff.query import Item
from daemon.stages.comment.normalize import mask_links
from daemon.stages.comment.personal import spans


def found(text: str) -> list[str]:
    return [text[a:b] for a, b in spans(text)]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("連絡は 03-1234-5678 まで", ["03-1234-5678"]),
        ("携帯０９０－１２３４－５６７８です", ["０９０－１２３４－５６７８"]),
        ("TEL 0312345678", ["0312345678"]),
        ("(03) 1234-5678", ["03) 1234-5678"]),
        ("+81 3-1234-5678 or +1 (555) 123-4567", ["+81 3-1234-5678", "+1 (555) 123-4567"]),
        ("〒100-8926 東京都千代田区霞が関2-1-2", ["〒100-8926", "東京都千代田区霞が関2-1-2"]),
        ("郵便 530-0001。", ["530-0001"]),
        ("大阪府大阪市北区梅田1-1-1に住む", ["大阪府大阪市北区梅田1-1-1"]),
        ("北海道札幌市中央区北3条西1-1", ["北海道札幌市中央区北3条西1-1"]),
        ("港区芝公園4丁目2番8号", ["港区芝公園4丁目2番8号"]),
        ("霞が関2丁目で働く", ["霞が関2丁目"]),
        ("東京都港区在住", ["東京都港区"]),
        ("1-2-3 Roppongi, Minato-ku, Tokyo 106-0032", ["1-2-3 Roppongi, Minato-ku, Tokyo 106-0032"]),
        ("I live in Minato City, Tokyo.", ["Minato City, Tokyo"]),
        ("4-5-6 Akasaka, Tokyo, Japan", ["4-5-6 Akasaka, Tokyo, Japan"]),
        ("ｔａｒｏ＠ｅｘａｍｐｌｅ．ｊｐ", ["ｔａｒｏ＠ｅｘａｍｐｌｅ．ｊｐ"]),
    ],
)
def test_personal_data_is_found(text: str, expected: list[str]) -> None:
    assert found(text) == expected


@pytest.mark.parametrize(
    "text",
    ["本編P.12の3-5行目と第2章", "2026-01-29に提出", "p.3-5, 0.5%", "AIの安全性1-2節", "仙台市在住の一市民",
     "ISO/IEC 27001:2022", "10,000件", "別添P.8 3-2-1 のリスク評価表"],
)
def test_what_is_not_personal_data_stays(text: str) -> None:
    assert found(text) == []


def item(sub: dict, sender: str | None = None) -> Item:
    return Item(record_id=1, index=1, received_at=dt.datetime(2026, 1, 10, tzinfo=dt.UTC), status="accepted",
                flags=[], submitter=sub, from_address=sender, text="", targets=[], pages=[], location=None,
                summary=None)


def test_the_name_is_masked_with_or_without_its_space_and_the_family_name_alone() -> None:
    values = private_values(item({"kind": "individual", "name": "山田 太郎"}))
    for written in ("山田 太郎", "山田太郎", "山田　太郎", "山田"):
        assert redact(f"私、{written}の意見です。", values) == f"私、{MASK}の意見です。"
    # a name written without a space: its first two characters stand for the family name
    assert name_parts("山田太郎") == {"山田太郎", "山田"}
    values = private_values(item({"kind": "individual", "name": "John Smith"}, "John Smith <js@example.com>"))
    assert redact("JOHN SMITH and Smith, not Smithsonian.", values) == f"{MASK} and {MASK}, not Smithsonian."


def test_the_sender_and_an_organisation_that_asked_for_anonymity() -> None:
    values = private_values(item({"kind": "individual"}, "hanako.sato@example.net"))
    assert redact("Hanako Sato です", values) == f"{MASK} {MASK} です"
    anon = private_values(item({"kind": "organization", "organization": "株式会社ヒミツ", "anonymous": True}))
    assert redact("株式会社ヒミツとして", anon) == f"{MASK}として"
    public = private_values(item({"kind": "organization", "organization": "株式会社オープン"}))
    assert redact("株式会社オープンとして", public) == "株式会社オープンとして"


@pytest.mark.parametrize("unit", ["市", "三条", "1-", "0", "0-", "１２３４", "a.b", "Ab ", "Minato-ku, ",
                                  "霞が関1丁目"])
def test_the_patterns_are_linear(unit: str) -> None:
    # hostile runs (issue 16: no worse than linear): four times the input must not cost sixteen times the time
    import time

    def cost(n: int) -> float:
        text = unit * n + "@x"
        best = float("inf")
        for _ in range(3):
            started = time.perf_counter()
            spans(text)
            redact(text, ["山田"])
            mask_links(text)  # the comment stage's own mail pattern
            best = min(best, time.perf_counter() - started)
        return best

    small, large = cost(1500), cost(6000)
    assert large < 8 * small + 0.02, (unit, small, large)
