"""R4's decision on plain data (daemon.stages.classify.policy) and the shared container guards
(daemon.guards) on small in-memory zips. No files, no libmagic verdicts, no services."""

from __future__ import annotations

import io
import zipfile

import pytest

from daemon.extract import ExtractLimits, extract_in_process
from daemon.guards import BoundedZip, Deadline, StopCode, ZipLimits
from daemon.stages.classify import Classification, ContainerLimits, classify
from daemon.stages.classify.content import Content
from daemon.stages.classify.policy import decide, extension

# The shape of rules/consultation.toml [attachments.kinds].
ALLOWED = {
    "word": ["doc", "docx"],
    "excel": ["xls", "xlsx"],
    "text": ["txt"],
    "ichitaro": ["jtd", "jtdc"],
}
MIME = "application/x-test"


def verdict(content: Content, ext: str | None, allowed: dict[str, list[str]] = ALLOWED) -> tuple[str, str | None]:
    c = decide(content, MIME, ext, allowed)
    assert (c.kind, c.format, c.mime) == (content.kind, content.format, MIME)
    return c.verdict, c.detail


# -- The policy, one verdict at a time --------------------------------------------------------------


@pytest.mark.parametrize(
    ("content", "ext"),
    [
        (Content("word", "docx"), "docx"),
        (Content("word", "doc"), "doc"),
        (Content("excel", "xlsx"), "xlsx"),
        (Content("ichitaro", "jtd"), "jtd"),
        (Content("ichitaro", "ichitaro-dos"), "jtd"),  # a plain format of its kind, under an allowed extension
        (Content("word", "docx"), None),  # no file name: the content decides alone
    ],
)
def test_allowed(content: Content, ext: str | None) -> None:
    assert verdict(content, ext) == ("allowed", None)


def test_allowed_text_names_its_charset() -> None:
    assert verdict(Content("text", "txt", charset="euc-jp"), "txt") == ("allowed", "charset:euc-jp")


def test_type_mismatch_when_the_extension_belongs_to_another_allowed_kind() -> None:
    assert verdict(Content("word", "docx"), "xlsx") == ("type_mismatch", "extension:xlsx")
    assert verdict(Content("text", "txt", charset="utf-8"), "docx") == ("type_mismatch", "extension:docx")
    # a kind that is not allowed at all, named like one that is
    assert verdict(Content("other", "pdf"), "docx") == ("type_mismatch", "extension:docx")
    assert verdict(Content("other", "pe"), "txt") == ("type_mismatch", "extension:txt")


def test_not_allowed_by_extension_or_format() -> None:
    assert verdict(Content("word", "docx"), "exe") == ("not_allowed", "extension:exe")
    assert verdict(Content("word", "docx"), "日本語") == ("not_allowed", "extension:other")  # never echoes odd names
    assert verdict(Content("other", "pdf"), "pdf") == ("not_allowed", "format:pdf")
    assert verdict(Content("other", "elf"), None) == ("not_allowed", "format:elf")
    # a template keeps its family's kind but is not a plain document ...
    assert verdict(Content("word", "dotx"), "docx") == ("not_allowed", "format:dotx")
    assert verdict(Content("excel", "xlsb"), "xlsx") == ("not_allowed", "format:xlsb")
    # ... unless the rules list its format as an extension of the kind
    assert verdict(Content("word", "dotx"), "dotx", {"word": ["docx", "dotx"]}) == ("allowed", None)


def test_problem_encryption_and_macros_come_first_in_that_order() -> None:
    assert verdict(Content("other", "zip", problem="limits:members"), "docx") == ("not_allowed", "limits:members")
    assert verdict(Content("word", "doc", encrypted="legacy_encryption"), "doc") == ("encrypted", "legacy_encryption")
    assert verdict(Content("word", "docm", macro="vba_project"), "docx") == ("macro", "vba_project")
    both = Content("word", "doc", encrypted="legacy_encryption", macro="vba_project")
    assert verdict(both, "doc") == ("encrypted", "legacy_encryption")
    broken = Content("other", "ole2", encrypted="encryption_info", problem="corrupt:ole2")
    assert verdict(broken, "doc") == ("not_allowed", "corrupt:ole2")


def test_the_rules_table_is_read_leniently() -> None:
    loud = {"word": [".DOCX", "Doc"]}
    assert verdict(Content("word", "docx"), "docx", loud) == ("allowed", None)
    assert verdict(Content("word", "doc"), "doc", loud) == ("allowed", None)
    assert verdict(Content("word", "docx"), "docx", {}) == ("not_allowed", "format:docx")


@pytest.mark.parametrize(
    ("filename", "ext"),
    [
        ("意見.docx", "docx"),
        ("意見.DOCX", "docx"),
        ("意見．ｄｏｃｘ", "docx"),  # full-width, NFKC
        ("C:\\Users\\a\\意見.Doc", "doc"),
        ("dir/a.tar.gz", "gz"),
        ("a.txt. ", "txt"),  # trailing dots and spaces dropped, as Windows does
        ("noextension", None),
        ("trailingdot.", None),
        ("", None),
        (None, None),
    ],
)
def test_extension(filename: str | None, ext: str | None) -> None:
    assert extension(filename) == ext


def test_classify_keeps_its_public_names() -> None:
    c = classify(b"\xe6\x84\x8f\xe8\xa6\x8b\n", "a.txt", "application/pdf", ALLOWED)
    assert isinstance(c, Classification) and (c.kind, c.verdict, c.detail) == ("text", "allowed", "charset:utf-8")


# -- The shared guards --------------------------------------------------------------------------------


class Stopped(Exception):
    def __init__(self, code: StopCode) -> None:
        super().__init__(code)
        self.code = code


def make_zip(members: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        for name, data in members.items():
            zf.writestr(name, data)
    return buf.getvalue()


def stop_code(data: bytes, limits: ZipLimits, read: str | None = None) -> StopCode | None:
    try:
        zf = BoundedZip(data, limits, Deadline(60, Stopped), Stopped)
        if read is not None:
            zf.read(read)
    except Stopped as stop:
        return stop.code
    return None


ZEROS = make_zip({"zeros": bytes(3 << 20)})  # 3 MiB of zeros in a few KiB: a (small) bomb
FIVE = make_zip({f"m{i}.xml": b"<a/>" * 10 for i in range(5)})


def test_a_zip_within_the_limits_opens_and_reads() -> None:
    with BoundedZip(FIVE, ZipLimits(), Deadline(60, Stopped), Stopped) as zf:
        assert zf.has("m0.xml") and not zf.has("m9.xml")
        assert zf.read("m4.xml") == b"<a/>" * 10
        assert zf.directory.members == 5 and not zf.directory.encrypted
        assert zf.budget == ZipLimits().max_uncompressed - 40


def test_a_zip_over_the_limits_stops_before_anything_is_inflated() -> None:
    assert len(ZEROS) < 64 * 1024
    assert stop_code(FIVE, ZipLimits(max_members=4)) == "members"
    assert stop_code(ZEROS, ZipLimits(max_uncompressed=1 << 20)) == "uncompressed"
    assert stop_code(ZEROS, ZipLimits(max_ratio=200)) == "ratio"
    assert stop_code(ZEROS, ZipLimits()) is None  # no ratio check unless the caller asks for one
    assert stop_code(FIVE, ZipLimits(max_member_read=16), read="m0.xml") == "member_read"
    assert stop_code(FIVE, ZipLimits(), read="missing.xml") == "corrupt"
    assert stop_code(FIVE[: len(FIVE) // 2], ZipLimits()) == "corrupt"
    assert stop_code(b"PK\x03\x04 not a zip", ZipLimits()) == "corrupt"


def test_every_read_counts_against_the_budget() -> None:
    one = make_zip({"m0.xml": b"<a/>" * 10})
    with BoundedZip(one, ZipLimits(max_uncompressed=60), Deadline(60, Stopped), Stopped) as zf:
        zf.read("m0.xml")
        with pytest.raises(Stopped) as stop:
            zf.read("m0.xml")  # 40 + 40 > 60
    assert stop.value.code == "uncompressed"


def test_the_deadline_stops_in_the_callers_words() -> None:
    Deadline(60, Stopped).check()
    expired = Deadline(-1.0, Stopped)  # already past: no sleeping for the clock to move
    with pytest.raises(Stopped) as stop:
        expired.check()
    assert stop.value.code == "time"


def test_classify_and_extract_share_the_guard_with_their_own_numbers_and_words() -> None:
    # the same zip over the same total: one guard, each caller's code for it
    assert classify(ZEROS, "a.docx", None, ALLOWED, ContainerLimits(max_uncompressed=1 << 20)).detail == (
        "limits:uncompressed"
    )
    assert extract_in_process(ZEROS, "word", "docx", ExtractLimits(max_uncompressed=1 << 20)).error == "too_large"
    # the classifier refuses an extreme ratio and caps one member; the extractors cap only the total
    assert ContainerLimits().zip == ZipLimits(max_member_read=4 << 20, max_ratio=200, ratio_min_size=1 << 20)
    assert ExtractLimits().zip == ZipLimits()
    assert classify(ZEROS, "a.docx", None, ALLOWED).detail == "limits:ratio"
    assert extract_in_process(ZEROS, "word", "docx").error == "corrupt"  # opened: no word/document.xml in it
