"""R9a: the comment is what the person wrote: a free-form attachment's text, the body as a cover letter or an
item, a signature block read as guessed submitter fields, and no comment flags on mail that was never read."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest

from daemon.model import VIRUS, Arrival, Part, Work
from daemon.rules import CommentRules, load_rules
from daemon.stages.comment import TextSource, analyze, comment_stage
from daemon.stages.comment.cover import is_cover_letter
from daemon.stages.comment.labels import compiled
from daemon.stages.comment.signature import guess_fields

RULES_FILE = Path(__file__).resolve().parents[2] / "rules" / "consultation.toml"
COVER = "お世話になります。\n意見を添付いたします。\n山田太郎"
DOCX_TEXT = ("本編（案）P.12について\n\n"
             "生成AIの出力を利用する事業者の義務として、入力だけでなく出力側の検証も明記すべきです。")


@pytest.fixture(scope="module")
def rules() -> CommentRules:
    return load_rules(RULES_FILE).comment


def body(text: str) -> TextSource:
    return TextSource("body", text, is_body=True)


def test_the_issue_example_the_attachment_is_the_comment(rules: CommentRules) -> None:
    r = analyze([body(COVER), TextSource("意見.docx", DOCX_TEXT)], "taro@example.jp", rules)
    assert [c.text for c in r.comments] == [DOCX_TEXT]
    assert r.comments[0].targets == ["main"] and r.comments[0].pages == ["P.12"]
    assert r.cover_letter == "body"
    assert "target_missing" not in r.flags and "page_missing" not in r.flags
    # the name of the signature is read, flagged as guessed
    assert r.submitter["name"] == "山田太郎" and r.submitter["guessed"] == ["name"]


@pytest.mark.parametrize(
    "text",
    [
        COVER,
        "総務省サイバーセキュリティ統括官室 御中\n\n標記の件について、意見書を送付いたします。\n"
        "よろしくお願いいたします。\n\n山田 太郎\n〒100-8926 東京都千代田区霞が関2-1-2\n03-1234-5678",
        "意見を添付します",
        "ご査収のほど宜しくお願い申し上げます。\n--\nYamada Taro\nhttps://example.jp/",
        "",
    ],
)
def test_cover_letters(rules: CommentRules, text: str) -> None:
    assert is_cover_letter(compiled(rules), text)


@pytest.mark.parametrize(
    "text",
    [
        "意見を添付します。\nなお、本編P.3の記述は削除すべきです。",
        "本編P.3について",  # short, but it names a draft and a page
        "賛成です。",
        "添付します。" + "あ" * 400 + "。",  # longer than cover_letter.max_chars
    ],
)
def test_bodies_that_are_more_than_a_cover_letter(rules: CommentRules, text: str) -> None:
    assert not is_cover_letter(compiled(rules), text)


def test_a_body_that_says_more_is_an_item_before_the_attachment(rules: CommentRules) -> None:
    text = "意見を添付します。\nなお、別添P.3の図は古いです。"
    r = analyze([body(text), TextSource("意見.txt", DOCX_TEXT)], None, rules)
    assert [c.text for c in r.comments] == [text, DOCX_TEXT]
    assert r.cover_letter is None


def test_the_cover_phrases_come_from_the_rules() -> None:
    import tomllib

    data = tomllib.loads(RULES_FILE.read_text(encoding="utf-8"))
    data["cover_letter"]["phrases"] = ["お納めください"]
    own = CommentRules.from_rules(data)
    assert is_cover_letter(compiled(own), "お納めください。\n山田太郎")
    assert not is_cover_letter(compiled(own), "意見を添付いたします。\n山田太郎")
    for bad, message in (({"phrases": []}, "cover_letter.phrases: must be a non-empty list"),
                         ({"max_chars": 0}, "cover_letter.max_chars: must be a positive"),
                         ({"phrase": ["x"]}, "cover_letter.phrase: unknown key")):
        data["cover_letter"] = bad
        with pytest.raises(ValueError, match=message):
            CommentRules.from_rules(data)


def test_a_labelled_ikensho_keeps_todays_rule(rules: CommentRules) -> None:
    doc = ("氏名：山田太郎\n住所：東京都千代田区霞が関1-1-1\n\n"
           "【意見1】\n本編P.3について賛成。\n【意見2】\n別添P.4について反対。")
    r = analyze([body("長い本文です。本編P.9についても一言。"), TextSource("意見書.docx", doc),
                 TextSource("参考.txt", "参考資料")], None, rules)
    assert [c.text for c in r.comments] == ["本編P.3について賛成。", "別添P.4について反対。"]
    assert r.cover_letter == "body" and r.submitter["guessed"] == []


def test_an_unreadable_attachment_makes_a_sending_body_no_item(rules: CommentRules) -> None:
    # a PDF-only mail (released or not): 「意見書をPDFで添付します。」 is not a 件
    r = analyze([body("意見書をPDFで添付します。\n山田太郎")], None, rules, attachments=1)
    assert r.comments == [] and "empty" in r.flags and r.cover_letter == "body"
    # without any attachment the same words are the comment, as written
    r = analyze([body("意見書をPDFで添付します。")], None, rules, attachments=0)
    assert [c.text for c in r.comments] == ["意見書をPDFで添付します。"]


def test_every_character_of_a_free_form_attachment_reaches_an_item(rules: CommentRules) -> None:
    text = ("AIの安全性について\n\n第一に、本編P.5の定義は曖昧です。\n第二に、別添の表3は更新が必要です。\n\n"
            "以上\n\n山田 花子\n東京都港区芝公園4-2-8")
    r = analyze([body(COVER), TextSource("opinion.txt", text)], None, rules)
    assert "".join("".join(c.text.split()) for c in r.comments) == "".join(text.split())
    # the signature is read as guessed fields, and stays in the item as written
    assert (r.submitter["name"], r.submitter["address"]) == ("山田太郎", "東京都港区芝公園4-2-8")
    assert r.submitter["guessed"] == ["name", "address"]


def test_signature_block_fields(rules: CommentRules) -> None:
    c = compiled(rules)
    text = ("本編P.3について意見があります。\n\nよろしくお願いします。\n\n株式会社テスト 技術部\n山田 太郎\n"
            "100-8926 東京都千代田区霞が関2-1-2\n03-1234-5678\ntaro@example.jp")
    assert dict(guess_fields(c, text)) == {"name": "山田 太郎", "postal_code": "100-8926",
                                           "address": "東京都千代田区霞が関2-1-2", "phone": "03-1234-5678",
                                           "email": "taro@example.jp"}
    # a labelled line (〒, TEL) is the labels' to read, in the record as a labelled field
    assert guess_fields(c, "意見です。\n\n〒100-8926\nTEL 03-1234-5678") == []
    r = analyze([body(text.replace("100-8926", "〒100-8926"))], None, rules)
    assert r.submitter["postal_code"] == "100-8926" and "postal_code" not in r.submitter["guessed"]
    assert guess_fields(c, "本編P.3について意見があります。\n以上") == []
    assert guess_fields(c, "意見です。\n\n企画課\n本編") == []


def test_a_label_wins_over_the_signature(rules: CommentRules) -> None:
    r = analyze([body("氏名：佐藤花子\n\n本編P.3について意見です。\n\n山田太郎\n東京都港区芝公園4-2-8")], None, rules)
    assert r.submitter["name"] == "佐藤花子"
    assert r.submitter["address"] == "東京都港区芝公園4-2-8" and r.submitter["guessed"] == ["address"]


def test_english_labels(rules: CommentRules) -> None:
    text = ("Name: John Smith\nAddress: 1-2-3 Roppongi, Minato-ku, Tokyo\nPhone: +81 3-1234-5678\n\n"
            "本編P.3について意見です。")
    r = analyze([body(text)], None, rules)
    assert (r.submitter["name"], r.submitter["address"], r.submitter["phone"]) == (
        "John Smith", "1-2-3 Roppongi, Minato-ku, Tokyo", "+81 3-1234-5678")
    assert [c.text for c in r.comments] == ["本編P.3について意見です。"]


def test_no_comment_flags_on_mail_that_was_never_read(rules: CommentRules) -> None:
    arrival = Arrival(raw=b"", source="ingest", received_at=dt.datetime.now(dt.UTC))
    work = Work(arrival=arrival, sha256=None, content_id=None, size=0)
    work.add_reason(VIRUS)
    work.attachments = [Part(position=1, data=b"", filename="意見書.txt", declared_mime="text/plain", kind="text",
                             format="txt", verdict="infected")]
    comment_stage(work, rules)
    assert work.flags == [] and work.result["comments"] == []
    # the same mail read (no virus): the flags are raised
    clean = Work(arrival=arrival, sha256=None, content_id=None, size=0)
    comment_stage(clean, rules)
    assert {"missing_name", "empty"} <= set(clean.flags)

