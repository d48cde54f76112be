"""The web application's pure parts: every reason, flag, status and verdict has a Japanese explanation; the
download header cannot be broken by a file name; search words are split and folded as the page promises."""

from __future__ import annotations

from urllib.parse import unquote

from daemon import model
from daemon.staff import explain
from daemon.staff.records import split_words
from daemon.web.disposition import content_disposition

README_REASONS = ("too_large", "attachment_not_allowed", "attachment_type_mismatch", "attachment_macro",
                  "attachment_encrypted", "virus", "scan_unavailable", "scan_incomplete", "malformed",
                  "malformed_structure", "processing_failed", "staff_rejected")


def test_every_reason_code_of_the_model_is_explained() -> None:
    # A code added to daemon/model.py without its Japanese sentence showed as a bare code (malformed_structure).
    codes = {v for k, v in vars(model).items() if k.isupper() and isinstance(v, str) and k not in (
        "DUPLICATE_TEXT", "ACCEPTED", "REJECTED", "QUARANTINED", "HELD", "DUPLICATE")}
    assert "malformed_structure" in codes
    assert {c for c in codes if explain.reason(c).label == c} == set()
README_FLAGS = ("early", "late", "received_at_uncertain", "not_japanese", "missing_name", "missing_address",
                "missing_contact", "summary_missing", "target_missing", "page_missing", "empty", "extraction_failed",
                "released", "duplicate_text")


def test_every_code_has_a_sentence_and_every_problem_a_next_step() -> None:
    for code in README_REASONS:
        e = explain.reason(code)
        assert e.label != code and e.text.endswith("。") and e.next, code
    for code in README_FLAGS:
        assert explain.flag(code).label != code, code
    for status in (model.ACCEPTED, model.REJECTED, model.QUARANTINED, model.HELD, model.DUPLICATE):
        assert explain.status(status).label == explain.STATUS_LABELS[status]
    for verdict in ("allowed", "not_allowed", "type_mismatch", "macro", "encrypted", "infected"):
        assert explain.verdict(verdict).label != verdict
    assert explain.reason("a_newer_code").label == "a_newer_code"  # shown, never hidden
    lines = explain.lines(["attachment_not_allowed"], ["late"])
    assert lines[0].startswith("attachment_not_allowed（対象外の添付形式）: ") and "→" in lines[0]


def test_content_disposition_keeps_the_japanese_name_and_cannot_be_broken() -> None:
    cd = content_disposition("意見書_山田.docx", "attachment-3-1")
    assert cd.startswith('attachment; filename="attachment-3-1.docx"; filename*=UTF-8\'\'')
    assert unquote(cd.split("''", 1)[1]) == "意見書_山田.docx"
    hostile = content_disposition('a"; filename=evil.exe\r\nSet-Cookie: x=1', "f")
    assert "\r" not in hostile and "\n" not in hostile and hostile.count('"') == 2
    assert content_disposition("../../etc/passwd", "f").startswith('attachment; filename="passwd"')
    assert content_disposition(None, "record-1.eml").startswith('attachment; filename="record-1.eml"')


def test_search_words_are_split_on_any_space_and_folded() -> None:
    assert split_words("生成ＡＩ　安全性  P.3") == ["生成ai", "安全性", "p.3"]
    assert split_words("  ") == []
    assert len(split_words(" ".join(f"w{i}" for i in range(20)))) == 8
