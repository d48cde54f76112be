"""Comment analysis stage (R6–R11): fields, kind, anonymity, items, targets, pages, 要旨, flags."""

from __future__ import annotations

import ast
import copy
import tomllib
from pathlib import Path
from typing import Any

import pytest

from daemon.rules import CommentRules, load_rules
from daemon.stages.comment import (
    CommentResult,
    TextSource,
    analyze,
    duplicate_key,
)

RULES_FILE = Path(__file__).resolve().parents[2] / "rules" / "consultation.toml"


@pytest.fixture(scope="module")
def raw_rules() -> dict[str, Any]:
    with RULES_FILE.open("rb") as fh:
        return tomllib.load(fh)


@pytest.fixture(scope="module")
def rules(raw_rules: dict[str, Any]) -> CommentRules:
    return CommentRules.from_rules(raw_rules)


FIELDS = "氏名：山田太郎\n住所：東京都千代田区霞が関1-1-1\n電話番号：03-1234-5678\n"
OK_COMMENT = "本編P.3の記述について、具体例を追記すべきです。"


def body(text: str) -> TextSource:
    return TextSource("body", text, is_body=True)


def run(rules: CommentRules, *sources: TextSource, sender: str | None = None) -> CommentResult:
    return analyze(list(sources), sender, rules)


# ---- rules -------------------------------------------------------------------------------


def test_rules_loaded_from_file(rules: CommentRules) -> None:
    assert rules.summary_threshold == 1000 and load_rules(RULES_FILE).comment.summary_threshold == 1000
    assert "本編" in rules.targets["main"] and "付属資料" in rules.targets["annex"]
    assert "代表者氏名" in rules.fields["representative"]
    assert "該当箇所" in rules.comment_labels["location"]
    assert "株式会社" in rules.organization_markers and "匿名希望" in rules.anonymity_markers


@pytest.mark.parametrize(
    ("path", "value", "message"),
    [
        (("limits", "summary_threshold_chars"), None, "limits.summary_threshold_chars: missing"),
        (("limits", "summary_threshold_chars"), "1000", "limits.summary_threshold_chars: must be"),
        (("fields", "phone"), None, "fields.phone: missing"),
        (("fields", "phone"), [], "fields.phone: must be a non-empty list"),
        (("comment", "opinion"), "意見", "comment.opinion: must be a non-empty list"),
        (("targets", "main"), None, None),  # dropping one draft is fine
        (("targets", "annex", "aliases"), None, "targets.annex.aliases: missing"),
        (("submitter", "anonymity_markers"), None, "submitter.anonymity_markers: missing"),
        # A missing table is reported by the first required key in it, as `intake` reports it for a file.
        (("submitter",), None, "submitter.organization_markers: missing"),
    ],
)
def test_rules_errors_name_the_key(
    raw_rules: dict[str, Any], path: tuple[str, ...], value: Any, message: str | None
) -> None:
    data = copy.deepcopy(raw_rules)
    holder = data
    for k in path[:-1]:
        holder = holder[k]
    if value is None:
        del holder[path[-1]]
    else:
        holder[path[-1]] = value
    if message is None:
        CommentRules.from_rules(data)
        return
    with pytest.raises(ValueError, match=f"^{message}"):
        CommentRules.from_rules(data)


def test_rules_unknown_field_is_an_error(raw_rules: dict[str, Any]) -> None:
    data = copy.deepcopy(raw_rules)
    data["fields"]["fax"] = ["FAX"]
    with pytest.raises(ValueError, match=r"^fields\.fax: unknown field"):
        CommentRules.from_rules(data)


def test_labels_come_from_the_rules(raw_rules: dict[str, Any]) -> None:
    data = copy.deepcopy(raw_rules)
    data["fields"]["name"] = ["投稿者"]
    data["targets"]["main"]["aliases"] = ["第一部"]
    data["targets"]["main"]["label"] = "第一部"
    custom = CommentRules.from_rules(data)
    r = run(custom, body("投稿者：山田太郎\n\n第一部の3ページについて修正が必要です。"))
    assert r.submitter["name"] == "山田太郎"
    assert r.comments[0].targets == ["main"]
    assert r.comments[0].text == "第一部の3ページについて修正が必要です。"


# ---- R8: 要旨 over 1,000 characters ---------------------------------------------------------


def _long_comment(n: int) -> str:
    """n counted characters (NFC, whitespace not counted), spread over lines with spaces."""
    head = "本編P.3について。"
    filler = "あ" * (n - len(head))
    lines = [filler[i : i + 50] for i in range(0, len(filler), 50)]
    return head + "\n" + "\n　 ".join(lines)


def test_summary_missing_over_threshold(rules: CommentRules) -> None:
    r = run(rules, body(FIELDS + "\n" + _long_comment(1001)))
    assert len(r.comments) == 1 and r.comments[0].chars == 1001
    assert "summary_missing" in r.flags


def test_summary_present_clears_flag(rules: CommentRules) -> None:
    r = run(rules, body(FIELDS + "\n要旨：本編の記述を具体化すべき。\n\n" + _long_comment(1001)))
    assert r.comments[0].chars == 1001
    assert r.comments[0].summary == "本編の記述を具体化すべき。"
    assert "summary_missing" not in r.flags
    assert r.flags == []


def test_exactly_threshold_is_not_flagged(rules: CommentRules) -> None:
    r = run(rules, body(FIELDS + "\n" + _long_comment(1000)))
    assert r.comments[0].chars == 1000
    assert "summary_missing" not in r.flags


def test_summary_counts_all_items_of_the_mail(rules: CommentRules) -> None:
    text = "【意見1】本編P.3\n" + "い" * 600 + "\n【意見2】本編P.4\n" + "う" * 600
    r = run(rules, body(FIELDS + text))
    assert [c.chars for c in r.comments] == [605, 605]
    assert "summary_missing" in r.flags


def test_whole_submission_summary_goes_to_every_item(rules: CommentRules) -> None:
    text = "【要旨】\n本編を直すべき。\n\n【意見1】本編P.3\n" + "い" * 600 + "\n【意見2】本編P.4\n" + "う" * 600
    r = run(rules, body(FIELDS + text))
    assert [c.summary for c in r.comments] == ["本編を直すべき。", "本編を直すべき。"]
    assert "summary_missing" not in r.flags


# ---- R6: Japanese ------------------------------------------------------------------------------


def test_english_comment_is_not_japanese(rules: CommentRules) -> None:
    r = run(rules, body(FIELDS + "\nI think page 3 of the 本編 should explain prompt injection in more detail."))
    assert "not_japanese" in r.flags
    assert len(r.comments) == 1  # recorded, never rejected


def test_japanese_comment_with_english_terms_and_urls(rules: CommentRules) -> None:
    text = (
        "本編P.3のプロンプトインジェクション(prompt injection)対策について、"
        "https://example.com/very/long/english/path/about/security を参照し追記すべきです。"
    )
    r = run(rules, body(FIELDS + "\n" + text))
    assert "not_japanese" not in r.flags
    assert r.flags == []


def test_empty_comment_is_not_flagged_not_japanese(rules: CommentRules) -> None:
    r = run(rules, body(""))
    assert "not_japanese" not in r.flags


# ---- R11: submitter kind and anonymity --------------------------------------------------------


def test_organization_with_anonymity(rules: CommentRules) -> None:
    text = (
        "名称：株式会社サンプル\n代表者氏名：代表取締役　鈴木一郎\n所在地：大阪府大阪市北区1-2-3\n"
        "連絡担当者：佐藤花子\n電子メールアドレス：info@example.co.jp\n匿名希望\n\n" + OK_COMMENT
    )
    r = run(rules, body(text))
    s = r.submitter
    assert s["kind"] == "organization"
    assert s["anonymous"] is True
    assert s["organization"] == "株式会社サンプル"
    assert s["representative"] == "代表取締役　鈴木一郎"  # 代表者氏名 is not read as 氏名
    assert s["name"] is None
    assert s["contact_person"] == "佐藤花子"  # 連絡担当者, not 担当者
    assert s["email"] == "info@example.co.jp"
    assert s["address"] == "大阪府大阪市北区1-2-3"
    assert r.comments[0].text == OK_COMMENT  # the field block and 匿名希望 are not comment text
    assert r.flags == []  # 名称 counts as the name, 所在地 as the address


def test_organization_marker_in_name(rules: CommentRules) -> None:
    r = run(rules, body("氏名：一般社団法人サンプル協会\n住所：東京都\n\n" + OK_COMMENT), sender="a@b.jp")
    assert r.submitter["kind"] == "organization"
    assert r.submitter["organization"] == "一般社団法人サンプル協会"
    assert r.submitter["anonymous"] is False


def test_individual(rules: CommentRules) -> None:
    r = run(rules, body(FIELDS + "\n" + OK_COMMENT))
    assert r.submitter["kind"] == "individual"
    assert r.submitter["anonymous"] is False
    assert r.submitter["name"] == "山田太郎"


def test_unknown_kind_without_names(rules: CommentRules) -> None:
    r = run(rules, body(OK_COMMENT), sender="x@example.jp")
    assert r.submitter["kind"] == "unknown"


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        ("※名称の公表を希望しません。", True),
        ("公表の可否：非公表", True),
        ("匿名希望：有", True),
        ("匿名希望：", False),  # an unfilled form line
        ("匿名希望：なし", False),
        ("非公表情報の取扱いについても検討すべきです。", False),  # comment text, not a request
    ],
)
def test_anonymity_forms(rules: CommentRules, line: str, expected: bool) -> None:
    r = run(rules, body("名称：株式会社サンプル\n住所：東京都\n" + line + "\n\n" + OK_COMMENT), sender="a@b.jp")
    assert r.submitter["anonymous"] is expected


# ---- R7: missing fields, From as contact -------------------------------------------------------


def test_missing_name_and_address(rules: CommentRules) -> None:
    r = run(rules, body("電話番号：03-1234-5678\n\n" + OK_COMMENT))
    assert "missing_name" in r.flags and "missing_address" in r.flags
    assert "missing_contact" not in r.flags


def test_name_and_address_present(rules: CommentRules) -> None:
    r = run(rules, body(FIELDS + "\n" + OK_COMMENT))
    assert "missing_name" not in r.flags and "missing_address" not in r.flags


def test_from_address_is_a_contact(rules: CommentRules) -> None:
    text = "氏名：山田太郎\n住所：東京都\n\n" + OK_COMMENT
    r = run(rules, body(text), sender="山田 <taro@example.jp>")
    assert r.submitter["email"] == "taro@example.jp"
    assert "missing_contact" not in r.flags


def test_no_contact_at_all(rules: CommentRules) -> None:
    r = run(rules, body("氏名：山田太郎\n住所：東京都\n\n" + OK_COMMENT), sender=None)
    assert r.submitter["email"] is None and r.submitter["phone"] is None
    assert "missing_contact" in r.flags


def test_own_email_field_is_kept_over_from(rules: CommentRules) -> None:
    text = "氏名：山田太郎\n住所：東京都\nメールアドレス：own@example.jp\n\n" + OK_COMMENT
    r = run(rules, body(text), sender="other@example.jp")
    assert r.submitter["email"] == "own@example.jp"


@pytest.mark.parametrize(
    ("block", "expected"),
    [
        ("【氏名】山田太郎", {"name": "山田太郎"}),
        ("［氏名］　山田太郎", {"name": "山田太郎"}),
        ("（氏名）山田太郎", {"name": "山田太郎"}),
        ("氏　名：山田太郎", {"name": "山田太郎"}),
        ("氏名\t山田太郎", {"name": "山田太郎"}),
        ("氏名 山田太郎\n住所 東京都港区", {"name": "山田太郎", "address": "東京都港区"}),
        ("氏名\n山田太郎", {"name": "山田太郎"}),
        ("氏名（ふりがな）：山田太郎（やまだたろう）", {"name": "山田太郎（やまだたろう）"}),
        ("ＴＥＬ：０３－１２３４－５６７８", {"phone": "０３－１２３４－５６７８"}),
        ("TEL:03-1234-5678", {"phone": "03-1234-5678"}),
        ("E-mail: taro@example.jp", {"email": "taro@example.jp"}),
        ("電子メールアドレス：taro@example.jp", {"email": "taro@example.jp"}),
        ("〒100-8926 東京都千代田区霞が関2-1-2", {"postal_code": "100-8926", "address": "東京都千代田区霞が関2-1-2"}),
        ("郵便番号：１００－８９２６", {"postal_code": "１００－８９２６"}),
        ("住所：〒100-8926 東京都千代田区", {"postal_code": "100-8926", "address": "〒100-8926 東京都千代田区"}),
        ("氏名：山田太郎　電話：03-1111-2222", {"name": "山田太郎", "phone": "03-1111-2222"}),
        ("連絡担当者氏名：佐藤", {"contact_person": "佐藤", "name": None}),
    ],
)
def test_field_label_forms(rules: CommentRules, block: str, expected: dict[str, str | None]) -> None:
    r = run(rules, body(block + "\n\n" + OK_COMMENT))
    for key, value in expected.items():
        assert r.submitter[key] == value, key
    assert r.comments[0].text == OK_COMMENT


def test_label_word_inside_comment_is_not_a_field(rules: CommentRules) -> None:
    text = "住所の記載方法について、本編P.3で明確にすべきです。\n電話による問い合わせ窓口も必要です。"
    r = run(rules, body(text), sender="a@b.jp")
    assert r.submitter["address"] is None and r.submitter["phone"] is None
    assert r.comments[0].text == text


# ---- R9: targets and pages ---------------------------------------------------------------------


def test_target_and_page_present(rules: CommentRules) -> None:
    r = run(rules, body(FIELDS + "\n" + OK_COMMENT))
    assert r.comments[0].targets == ["main"]
    assert r.comments[0].pages == ["P.3"]
    assert "target_missing" not in r.flags and "page_missing" not in r.flags


def test_target_and_page_missing(rules: CommentRules) -> None:
    r = run(rules, body(FIELDS + "\nAIのセキュリティ対策をもっと強化すべきだと考えます。"))
    assert r.comments[0].targets == [] and r.comments[0].pages == []
    assert "target_missing" in r.flags and "page_missing" in r.flags


def test_one_item_missing_a_page_flags_the_mail(rules: CommentRules) -> None:
    r = run(rules, body(FIELDS + "【意見1】本編P.3について修正を求めます。\n【意見2】別添について修正を求めます。"))
    assert [c.pages for c in r.comments] == [["P.3"], []]
    assert "page_missing" in r.flags and "target_missing" not in r.flags


def test_both_targets(rules: CommentRules) -> None:
    r = run(rules, body(FIELDS + "\n本編（案）P.3と別添（付属資料）（案）P.10の用語を統一すべきです。"))
    assert r.comments[0].targets == ["main", "annex"]
    assert r.comments[0].pages == ["P.3", "P.10"]


def test_page_forms_as_written_in_order_deduplicated(rules: CommentRules) -> None:
    text = (
        "本編のP.12、p3-5、pp.3-5、Ｐ．３、3頁、3ページ、3～5ページ、第2章、第２節、2.1節、3.2.1項、"
        "P.12（再掲）、5項目の指摘、https://example.com/p9 を参照。"
    )
    r = run(rules, body(FIELDS + "\n" + text))
    assert r.comments[0].pages == [
        "P.12", "p3-5", "pp.3-5", "Ｐ．３", "3頁", "3ページ", "3～5ページ", "第2章", "第２節", "2.1節", "3.2.1項",
    ]  # fmt: skip


def test_table_rows_are_items(rules: CommentRules) -> None:
    table = [
        ["該当箇所", "意見", "理由"],
        ["本編 P.3", "用語を定義すべき。", "読み手が迷うため。"],
        ["別添 第2章", "図を追加すべき。", ""],
        ["本編 3頁", "例を追加すべき。", "わかりにくい。"],
    ]
    doc = TextSource("意見書.docx", "", tables=[[["氏名", "山田太郎"], ["住所", "東京都"]], table])
    r = run(rules, body("別添のとおり意見を提出します。"), doc, sender="a@b.jp")
    assert [c.text for c in r.comments] == [
        "用語を定義すべき。\n読み手が迷うため。",
        "図を追加すべき。",
        "例を追加すべき。\nわかりにくい。",
    ]
    assert [c.targets for c in r.comments] == [["main"], ["annex"], ["main"]]
    assert [c.pages for c in r.comments] == [["P.3"], ["第2章"], ["3頁"]]
    assert [c.location for c in r.comments] == ["本編 P.3", "別添 第2章", "本編 3頁"]
    assert r.cover_letter == "body"
    assert r.flags == []


def test_table_location_without_target_falls_back_to_opinion(rules: CommentRules) -> None:
    table = [["No.", "該当箇所", "意見内容"], ["1", "3ページ", "本編のこの記述は曖昧です。"], ["2", "", ""]]
    r = run(rules, TextSource("意見.xlsx", "", tables=[table]), body(FIELDS))
    assert len(r.comments) == 1
    assert r.comments[0].targets == ["main"] and r.comments[0].pages == ["3ページ"]


def test_numbered_sections_in_body(rules: CommentRules) -> None:
    text = (
        FIELDS + "\n以下のとおり意見を提出します。\n\n"
        "【意見1】\n該当箇所：本編 P.3\n意見：用語を定義すべきです。\n理由：読み手が迷うため。\n\n"
        "【意見２】\n該当箇所：別添 第2章\n図を追加すべきです。\n"
    )
    r = run(rules, body(text))
    assert len(r.comments) == 2
    assert r.comments[0].text == "用語を定義すべきです。\n理由：読み手が迷うため。"
    assert r.comments[0].targets == ["main"] and r.comments[0].pages == ["P.3"]
    assert r.comments[1].text == "図を追加すべきです。"
    assert r.comments[1].targets == ["annex"] and r.comments[1].pages == ["第2章"]
    assert r.cover_letter is None
    assert r.flags == []


@pytest.mark.parametrize(
    "markers",
    [("意見1：", "意見2："), ("意見１", "意見２"), ("(1)", "(2)"), ("（１）", "（２）"), ("①", "②")],
)
def test_section_marker_styles(rules: CommentRules, markers: tuple[str, str]) -> None:
    text = f"{markers[0]} 本編P.3を修正すべき。\n{markers[1]} 別添の第2章を修正すべき。\n"
    r = run(rules, body(FIELDS + text))
    assert [c.text for c in r.comments] == ["本編P.3を修正すべき。", "別添の第2章を修正すべき。"]
    assert [c.targets for c in r.comments] == [["main"], ["annex"]]


def test_sub_points_inside_a_section_do_not_split(rules: CommentRules) -> None:
    text = "【意見1】本編P.3について\n(1) 用語\n(2) 図\n【意見2】別添P.4について\n① 例\n② 表\n"
    r = run(rules, body(FIELDS + text))
    assert [c.text for c in r.comments] == ["本編P.3について\n(1) 用語\n(2) 図", "別添P.4について\n① 例\n② 表"]


def test_repeated_label_blocks_without_numbers(rules: CommentRules) -> None:
    text = (
        "【該当箇所】本編P.3\n【意見】用語を定義すべき。\n【理由】迷うため。\n"
        "【該当箇所】別添P.5\n【意見】図を追加すべき。\n"
    )
    r = run(rules, body(FIELDS + text))
    assert [c.location for c in r.comments] == ["本編P.3", "別添P.5"]
    assert [c.text for c in r.comments] == ["用語を定義すべき。\n【理由】迷うため。", "図を追加すべき。"]


def test_section_summary_belongs_to_its_item(rules: CommentRules) -> None:
    text = "【意見1】本編P.3\n内容1\n要旨：要旨1\n【意見2】本編P.4\n内容2\n"
    r = run(rules, body(FIELDS + text))
    assert [c.summary for c in r.comments] == ["要旨1", None]
    assert [c.text for c in r.comments] == ["本編P.3\n内容1", "本編P.4\n内容2"]


# ---- body or attachment --------------------------------------------------------------------


def test_attachment_is_the_opinion_document(rules: CommentRules) -> None:
    doc = TextSource(
        "意見書.docx",
        "意見書\n氏名：山田太郎\nTEL:03-1234-5678\n\n本編P.3の用語を定義すべきです。\n",
        tables=[[["氏名", "山田太郎"], ["住所", "東京都千代田区霞が関1-1-1"]]],
    )
    r = run(rules, body("別添のとおり意見を提出します。"), doc, sender="sender@example.jp")
    assert r.cover_letter == "body"
    assert [c.text for c in r.comments] == ["意見書\n\n本編P.3の用語を定義すべきです。"]
    assert r.submitter["name"] == "山田太郎"
    assert r.submitter["address"] == "東京都千代田区霞が関1-1-1"  # from the cells
    assert r.submitter["phone"] == "03-1234-5678"
    assert r.submitter["email"] is None  # a phone was given: the From address is not needed
    assert r.flags == []


def test_fields_from_attachment_first_then_body(rules: CommentRules) -> None:
    doc = TextSource("意見書.docx", "氏名：山田太郎\n【意見1】本編P.3を修正すべき。\n")
    mail = body("住所：東京都港区\n氏名：別名\n別添のとおり提出します。")
    r = run(rules, mail, doc)
    assert r.submitter["name"] == "山田太郎" and r.submitter["address"] == "東京都港区"
    assert r.cover_letter == "body"


def test_summary_in_cover_letter_applies_to_the_opinion_document(rules: CommentRules) -> None:
    doc = TextSource("意見書.txt", FIELDS + "【意見1】本編P.3\n" + "い" * 600 + "\n【意見2】本編P.4\n" + "う" * 600)
    r = run(rules, body("別添のとおり提出します。\n要旨：本編を直すべき。"), doc)
    assert r.cover_letter == "body"
    assert [c.summary for c in r.comments] == ["本編を直すべき。", "本編を直すべき。"]
    assert "summary_missing" not in r.flags


def test_tab_separated_table_in_a_text_attachment(rules: CommentRules) -> None:
    text = "氏名\t山田太郎\n住所\t東京都\n\n該当箇所\t意見\t理由\n本編P.3\t直すべき\t曖昧\n別添P.4\t追記すべき\t\n"
    r = run(rules, body("送ります。"), TextSource("意見.txt", text), sender="a@b.jp")
    assert [(c.text, c.targets, c.pages) for c in r.comments] == [
        ("直すべき\n曖昧", ["main"], ["P.3"]),
        ("追記すべき", ["annex"], ["P.4"]),
    ]
    assert r.submitter["name"] == "山田太郎" and r.cover_letter == "body"
    assert r.flags == []


def test_vertical_form_table(rules: CommentRules) -> None:
    table = [
        ["氏名", "山田太郎"],
        ["住所", "東京都"],
        ["電話番号", "03-1234-5678"],
        ["該当箇所", "本編 P.3"],
        ["意見", "用語を定義すべきです。\n具体例も必要です。"],
    ]
    r = run(rules, body("意見を送ります。"), TextSource("意見書.docx", "", tables=[table]))
    assert [c.text for c in r.comments] == ["用語を定義すべきです。\n具体例も必要です。"]
    assert r.comments[0].pages == ["P.3"]
    assert r.cover_letter == "body"
    assert r.flags == []


def test_label_row_with_values_below(rules: CommentRules) -> None:
    table = [["氏名", "住所", "電話番号"], ["山田太郎", "東京都", "03-1234-5678"]]
    r = run(rules, body(OK_COMMENT), TextSource("提出者.xlsx", "", tables=[table]))
    assert (r.submitter["name"], r.submitter["address"], r.submitter["phone"]) == ("山田太郎", "東京都", "03-1234-5678")
    # the attachment only holds the fields: the body stays the comment
    assert [c.text for c in r.comments] == [OK_COMMENT]
    assert r.cover_letter is None


def test_plain_attachment_and_a_body_with_its_own_comment_are_both_items(rules: CommentRules) -> None:
    # R9a: the body says more than "sending you": it is an item, and so is the free-form attachment's text
    r = run(rules, body(FIELDS + "\n" + OK_COMMENT), TextSource("memo.txt", "参考資料です。"))
    assert [c.text for c in r.comments] == [OK_COMMENT, "参考資料です。"]
    assert r.cover_letter is None


def test_plain_attachment_with_empty_body(rules: CommentRules) -> None:
    r = run(rules, body(""), TextSource("意見.txt", FIELDS + "\n" + OK_COMMENT))
    assert [c.text for c in r.comments] == [OK_COMMENT]
    assert r.cover_letter is None
    assert r.flags == []


def test_signature_is_not_comment_text_but_gives_fields(rules: CommentRules) -> None:
    text = "氏名：山田太郎\n住所：東京都\n\n" + OK_COMMENT + "\n-- \n山田太郎\nTEL: 03-1234-5678\n"
    r = run(rules, body(text))
    assert [c.text for c in r.comments] == [OK_COMMENT]
    assert r.submitter["phone"] == "03-1234-5678"


def test_text_is_stored_as_written(rules: CommentRules) -> None:
    text = "　本編Ｐ．３について、ＡＩ（人工知能）の定義を〜明確に。\r\n２行目です。"
    r = run(rules, body(FIELDS + "\n" + text))
    assert r.comments[0].text == text
    assert r.comments[0].pages == ["Ｐ．３"]


# ---- empty ----------------------------------------------------------------------------------


def test_empty_when_no_text_anywhere(rules: CommentRules) -> None:
    r = run(rules, body(""), TextSource("意見書.docx", "  \n", tables=[]), sender="a@b.jp")
    assert r.comments == []
    assert "empty" in r.flags
    assert "target_missing" not in r.flags and "page_missing" not in r.flags
    assert "not_japanese" not in r.flags and "summary_missing" not in r.flags


def test_fields_only_is_empty(rules: CommentRules) -> None:
    r = run(rules, body(FIELDS))
    assert r.comments == [] and "empty" in r.flags


def test_comment_text_is_not_empty(rules: CommentRules) -> None:
    r = run(rules, body(FIELDS + "\n" + OK_COMMENT))
    assert "empty" not in r.flags


def test_no_sources(rules: CommentRules) -> None:
    r = run(rules)
    assert r.comments == [] and r.cover_letter is None
    assert r.flags == ["missing_name", "missing_address", "missing_contact", "empty"]


# ---- duplicate_key ----------------------------------------------------------------------------


def test_duplicate_key_unifies_variants() -> None:
    assert duplicate_key("意見～です。") == duplicate_key("意見〜です 。")
    assert duplicate_key("Ａ－Ｂ") == duplicate_key("A‐B") == duplicate_key("A—B") == duplicate_key("A−B")
    assert duplicate_key("ｺｰﾋｰ") == duplicate_key("コ-ヒ-")
    assert duplicate_key("意見\nです\u3000。") == "意見です。"


def test_duplicate_key_differs_for_different_texts() -> None:
    assert duplicate_key("意見です。") != duplicate_key("異見です。")
    assert duplicate_key("") == "" and duplicate_key(" \n\u3000") == ""


# ---- the package ------------------------------------------------------------------------------


def test_comment_package_does_no_io_imports() -> None:
    """The comment stage is pure: none of its modules reaches the store, the sources or the command line."""
    package = Path(__file__).resolve().parents[2] / "daemon" / "stages" / "comment"
    modules = sorted(package.glob("*.py"))
    assert len(modules) > 1
    for path in modules:
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else []
            if isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                # also "from daemon import store"
                names = [node.module, *(f"{node.module}.{a.name}" for a in node.names)]
            for name in names:
                assert not name.startswith(("daemon.store", "daemon.sources", "daemon.cli")), (path.name, name)
