"""The draft's outline (daemon/outline.py): validation of [outline] and the placement of comment items."""

from __future__ import annotations

import tomllib

import pytest

from daemon.outline import OTHER, Outline, OutlineError, page_numbers, parse_outline, section_numbers
from daemon.rules import RulesError, load_rules, parse_rules

from conftest import RULES

TOML = """
[outline]
other_title = "その他"
[[outline.sections]]
id = "main-1"
title = "本編 第1章"
target = "main"
pages = ["1-6"]
numbers = ["1"]
[[outline.sections]]
id = "main-2"
title = "本編 第2章"
target = "main"
pages = ["7-18", 30]
numbers = ["2"]
[[outline.sections]]
id = "main-2-1"
title = "本編 2.1 脅威の分類"
target = "main"
numbers = ["2.1"]
[[outline.sections]]
id = "annex"
title = "別添"
target = "annex"
pages = "1-200"
[[outline.sections]]
id = "any"
title = "用語集"
pages = ["300-310"]
"""


@pytest.fixture
def outline() -> Outline:
    return parse_outline(tomllib.loads(TOML), ["main", "annex"])


@pytest.mark.parametrize(("targets", "refs", "section"), [
    (["main"], ["P.3"], "main-1"),
    (["main"], ["p.7"], "main-2"),
    (["main"], ["18頁"], "main-2"),
    (["main"], ["P.30"], "main-2"),  # a second range of the same section
    (["main"], ["P.19"], OTHER),  # between the ranges
    (["annex"], ["P.3"], "annex"),  # the same page in the other draft
    ([], ["P.3"], "main-1"),  # no target named: the first section that has the page
    (["main"], ["第2章"], "main-2"),
    (["main"], ["第二章"], "main-2"),
    (["main"], ["2.1節"], "main-2-1"),  # the longest number wins
    (["main"], ["2.1.3項"], "main-2-1"),
    (["main"], ["2.2節"], "main-2"),
    (["main"], ["第十章"], OTHER),
    (["main"], [], OTHER),  # an item with no page
    (["main"], ["本編全体について"], OTHER),
    (["annex"], ["第2章"], OTHER),  # the chapter belongs to the other draft
    (["main"], ["P.99", "第1章"], "main-1"),  # no page fits, the chapter does
    (["main"], ["P.305"], "any"),  # a section for either draft
    (["main"], ["ｐ．１２"], "main-2"),  # full-width, as people type it
])
def test_items_are_placed_by_page_then_section_number(outline: Outline, targets: list[str], refs: list[str],
                                                      section: str) -> None:
    assert outline.place(targets, refs) == section


def test_page_and_section_references_are_read_as_people_write_them() -> None:
    assert page_numbers("P.3-5") == [3, 4, 5]
    assert page_numbers("pp.10~11") == [10, 11]
    assert page_numbers("12ページ") == [12]
    assert page_numbers("p.5-900") == [5]  # an implausible range counts as its first page
    assert page_numbers("第2章") == []
    assert section_numbers("第二十一章") == ["21"]
    assert section_numbers("3.2節") == ["3.2"]
    assert section_numbers("P.3") == []


def test_the_order_ends_with_the_other_section(outline: Outline) -> None:
    assert outline.order[-1] == (OTHER, "その他")
    assert [sid for sid, _ in outline.order[:-1]] == ["main-1", "main-2", "main-2-1", "annex", "any"]
    assert outline.title_of("gone") == "その他"


def test_no_outline_table_means_one_section() -> None:
    empty = parse_outline({}, ["main"])
    assert empty.order == [(OTHER, "その他・全般")]
    assert empty.place(["main"], ["P.3"]) == OTHER


@pytest.mark.parametrize(("patch", "message"), [
    ('id = "main-1"', "used twice"),
    ('id = "Main 1"', "short id"),
    ('id = "other"', "reserved"),
    ('target = "appendix"', "is not one of the targets"),
    ('pages = ["9-3"]', "range runs from a first page"),
    ('pages = ["abc"]', "not a page or a range"),
    ('numbers = ["第2章"]', "section numbers"),
    ('colour = "red"', "unknown key"),
])
def test_a_bad_section_is_a_one_line_error_naming_the_key(patch: str, message: str) -> None:
    key = patch.split(" = ")[0]
    lines = TOML.splitlines()
    # the second section, with `key` replaced (or added)
    starts = [i for i, line in enumerate(lines) if line == "[[outline.sections]]"]
    start, end = starts[1], starts[2]
    body = [line for line in lines[start + 1:end] if not line.startswith(key + " ")]
    text = "\n".join([*lines[:start + 1], patch, *body, *lines[end:]])
    with pytest.raises(OutlineError) as caught:
        parse_outline(tomllib.loads(text), ["main", "annex"])
    assert message in str(caught.value) and "\n" not in str(caught.value)
    assert str(caught.value).startswith("outline.sections[2]")


def test_a_section_that_can_hold_nothing_is_refused() -> None:
    with pytest.raises(OutlineError, match="give pages, numbers or both"):
        parse_outline({"outline": {"sections": [{"id": "x", "title": "X"}]}}, ["main"])


def test_the_rules_loader_names_the_file_and_the_key() -> None:
    data = tomllib.loads(RULES.read_text(encoding="utf-8"))
    data["outline"]["sections"][0]["target"] = "nope"
    with pytest.raises(RulesError) as caught:
        parse_rules(data, "rules/x.toml")
    assert str(caught.value).startswith("rules/x.toml: outline.sections[1].target:")


def test_the_shipped_rules_have_an_outline_for_both_drafts() -> None:
    rules = load_rules(RULES)
    targets = {s.target for s in rules.outline.sections}
    assert targets == {"main", "annex"}
    assert rules.title.startswith("AIのセキュリティ確保")
