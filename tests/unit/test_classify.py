"""The attachment classifier, on real files: the corpus, real producers, real bombs."""

from __future__ import annotations

import io
import random
import struct
import tomllib
import zipfile
from collections.abc import Callable
from pathlib import Path

import magic
import msoffcrypto
import olefile
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from oletools.olevba import VBA_Parser

from daemon.stages.classify import Classification, ContainerLimits, classify

import producers as p

# The table the consultation really uses: rules/consultation.toml [attachments.kinds].
RULES = Path(__file__).resolve().parents[2] / "rules" / "consultation.toml"
ALLOWED: dict[str, list[str]] = tomllib.loads(RULES.read_text(encoding="utf-8"))["attachments"]["kinds"]
VERDICTS = {"allowed", "not_allowed", "type_mismatch", "macro", "encrypted"}
KINDS = {"word", "excel", "text", "ichitaro", "other"}

needs_soffice = pytest.mark.skipif(not p.soffice_available(), reason="LibreOffice (soffice) not installed")


DEFAULT_LIMITS = ContainerLimits()


def check(data: bytes, filename: str | None, limits: ContainerLimits = DEFAULT_LIMITS) -> Classification:
    c = classify(data, filename, None, ALLOWED, limits)
    assert isinstance(c, Classification)
    assert c.verdict in VERDICTS and c.kind in KINDS
    return c


# --------------------------------------------------------------------------------------------
# The real corpus


@pytest.mark.parametrize(
    ("name", "kind", "fmt"),
    [
        ("test.doc", "word", "doc"),
        ("test_as.doc", "word", "doc"),
        ("test.docx", "word", "docx"),
        ("test_as.docx", "word", "docx"),
        ("test.xls", "excel", "xls"),
        ("test_as.xls", "excel", "xls"),
        ("test.xlsx", "excel", "xlsx"),
        ("test_as.xlsx", "excel", "xlsx"),
    ],
)
def test_corpus_office_is_allowed(name: str, kind: str, fmt: str) -> None:
    data = p.corpus(f"msoffice/{name}")
    c = check(data, name)
    assert (c.kind, c.format, c.verdict, c.detail) == (kind, fmt, "allowed", None)
    assert c.mime == magic.from_buffer(data, mime=True)
    # by content: the same bytes with no name are still allowed
    assert check(data, None).verdict == "allowed"


ICHITARO = {
    "taro2016_basic.jtd": "jtd",
    "taro2016_temp.jtt": "jtd",
    "taro2016_basic_zip.jtdc": "jtdc",
    "taro2016_temp_zip.jttc": "jtdc",
    "taro7_taro2016_basic.jfw": "jtd",
    "taro7_taro2016_temp.jvw": "jtd",
    "ver4_taro2016_basic.jsw": "ichitaro-dos",
    "ver5_taro2016_basic.jaw": "ichitaro-dos",
    "ver5_taro2016_temp.jtw": "ichitaro-dos",
    "ver6_taro2016_basic.jbw": "ichitaro-dos",
    "ver6_taro2016_temp.juw": "ichitaro-dos",
}


def test_the_whole_ichitaro_corpus_is_listed() -> None:
    assert {f.name for f in (p.CORPUS / "ichitaro").iterdir()} == set(ICHITARO)


@pytest.mark.parametrize(("name", "fmt"), sorted(ICHITARO.items()))
def test_corpus_ichitaro_is_allowed_never_word_never_macro(name: str, fmt: str) -> None:
    c = check(p.corpus(f"ichitaro/{name}"), name)
    assert (c.kind, c.format, c.verdict) == ("ichitaro", fmt, "allowed")


def test_ichitaro_macro_storage_is_present_but_not_a_macro() -> None:
    # Precondition that makes the test above mean something: the file has the DocumentMacro
    # storage that a name-based rule would refuse.
    data = p.corpus("ichitaro/taro2016_basic.jtd")
    with olefile.OleFileIO(io.BytesIO(data)) as ole:
        assert ole.exists("DocumentMacro/Macros")
    assert check(data, "意見.jtd").verdict == "allowed"


@pytest.mark.parametrize("name", ["test.ppt", "test.pptx"])
def test_corpus_powerpoint_is_not_allowed(name: str) -> None:
    c = check(p.corpus(f"msoffice/{name}"), name)
    assert (c.kind, c.format, c.verdict) == ("other", name.rsplit(".", 1)[1], "not_allowed")


def test_powerpoint_named_docx_is_a_mismatch() -> None:
    c = check(p.corpus("msoffice/test.pptx"), "意見.docx")
    assert (c.format, c.verdict, c.detail) == ("pptx", "type_mismatch", "extension:docx")


# --------------------------------------------------------------------------------------------
# Other formats and executables


@needs_soffice
def test_pdf_is_not_allowed() -> None:
    data = p.make_pdf()
    assert data.startswith(b"%PDF-")
    c = check(data, "意見.pdf")
    assert (c.kind, c.format, c.verdict, c.mime) == ("other", "pdf", "not_allowed", "application/pdf")
    assert check(data, "意見.doc").verdict == "type_mismatch"


def test_elf_named_txt_is_a_mismatch() -> None:
    data, name = p.make_elf_as_txt()
    c = classify(data, name, "text/plain", ALLOWED)  # the declared type does not decide
    assert (c.kind, c.format, c.verdict, c.detail) == ("other", "elf", "type_mismatch", "extension:txt")


def test_pe_named_txt_is_a_mismatch() -> None:
    data = p.make_pe()
    assert "PE32" in magic.from_buffer(data)  # libmagic agrees it is a PE
    c = check(data, "comment.txt")
    assert (c.format, c.verdict) == ("pe", "type_mismatch")
    assert check(data, None).verdict == "not_allowed"
    assert check(data, "setup.exe").verdict == "not_allowed"


def test_html_named_txt_is_a_mismatch() -> None:
    c = check(p.make_html(), "意見.txt")
    assert (c.format, c.verdict) == ("html", "type_mismatch")


@needs_soffice
def test_rtf_named_txt_is_a_mismatch() -> None:
    data = p.make_rtf()
    assert data.startswith(b"{\\rtf")
    c = check(data, "意見.txt")
    assert (c.kind, c.format, c.verdict) == ("other", "rtf", "type_mismatch")
    assert check(data, "意見.rtf").verdict == "not_allowed"


@needs_soffice
def test_odt_is_not_allowed() -> None:
    c = check(p.make_odt(), "意見.odt")
    assert (c.format, c.verdict) == ("odt", "not_allowed")


def test_empty_part() -> None:
    c = check(b"", "意見.txt")
    assert (c.kind, c.format, c.verdict) == ("other", "empty", "not_allowed")


# --------------------------------------------------------------------------------------------
# Macros


def test_the_vba_project_is_real() -> None:
    vp = VBA_Parser("vbaProject.bin", data=p.vba_project_bin())
    try:
        assert vp.detect_vba_macros()
        assert any("say_hello" in code for _, _, _, code in vp.extract_macros())
    finally:
        vp.close()


def test_docm_with_vba_is_macro() -> None:
    c = check(p.make_docm(), "意見.docm")
    assert (c.kind, c.format, c.verdict, c.detail) == ("word", "docm", "macro", "vba_project")
    # renamed to .docx it is still refused
    assert check(p.make_docm(), "意見.docx").verdict == "macro"


def test_xlsm_from_xlsxwriter_is_macro() -> None:
    c = check(p.make_xlsm(), "意見.xlsx")
    assert (c.kind, c.format, c.verdict, c.detail) == ("excel", "xlsm", "macro", "vba_project")


def test_vba_project_in_a_plain_docx_package_is_macro() -> None:
    c = check(p.make_docx_with_hidden_vba(), "意見.docx")
    assert (c.format, c.verdict, c.detail) == ("docx", "macro", "vba_project")


def test_xlm_macro_sheet_is_macro() -> None:
    c = check(p.make_xlsx_with_macrosheet(), "意見.xlsx")
    assert (c.format, c.verdict, c.detail) == ("xlsx", "macro", "xlm_macro")


def test_macro_enabled_type_alone_is_macro() -> None:
    # the content type says macroEnabled even though no VBA part is present
    data = p._rewrite_zip(
        p.make_docx(),
        replace={
            "[Content_Types].xml": zipfile.ZipFile(io.BytesIO(p.make_docx()))
            .read("[Content_Types].xml")
            .replace(
                b"application/vnd.openxmlformats-officedocument.wordprocessingml.document.main+xml",
                b"application/vnd.ms-word.document.macroEnabled.main+xml",
            )
        },
        add={},
    )
    c = check(data, "意見.docx")
    assert (c.format, c.verdict, c.detail) == ("docm", "macro", "macro_enabled")


# --------------------------------------------------------------------------------------------
# Encryption


@pytest.mark.parametrize("name", ["意見.docx", "意見.doc", None])
def test_password_protected_docx_is_encrypted(name: str | None) -> None:
    data = p.make_encrypted_docx()
    assert data.startswith(b"\xd0\xcf\x11\xe0")  # an OLE2 wrapper, not a zip
    c = check(data, name)
    assert (c.format, c.verdict, c.detail) == ("encrypted-ooxml", "encrypted", "encryption_info")
    assert c.mime == "application/encrypted"


def test_password_protected_xlsx_is_encrypted() -> None:
    assert check(p.make_encrypted_xlsx(), "意見.xlsx").verdict == "encrypted"


def test_zip_with_encrypted_members_is_encrypted() -> None:
    c = check(p.make_zip_with_encrypted_flag(), "意見.docx")
    assert (c.verdict, c.detail) == ("encrypted", "zip_encrypted")


@needs_soffice
@pytest.mark.parametrize(
    ("maker", "plain", "kind", "fmt"),
    [
        (p.make_encrypted_doc, p.make_doc, "word", "doc"),
        (p.make_encrypted_xls, p.make_xls, "excel", "xls"),
    ],
)
def test_password_protected_doc_and_xls_are_encrypted(
    maker: Callable[[], bytes], plain: Callable[[], bytes], kind: str, fmt: str
) -> None:
    data = maker()
    # real encryption: the password opens it
    office = msoffcrypto.OfficeFile(io.BytesIO(data))
    office.load_key(password="himitsu")
    office.decrypt(io.BytesIO())
    c = check(data, f"意見.{fmt}")
    assert (c.kind, c.format, c.verdict, c.detail) == (kind, fmt, "encrypted", "legacy_encryption")
    # the same producer without a password: allowed
    c = check(plain(), f"意見.{fmt}")
    assert (c.kind, c.format, c.verdict) == (kind, fmt, "allowed")


def test_legacy_word_encryption_flag_is_encrypted() -> None:
    # The FIB's fEncrypted bit (0x0100 at offset 10 of WordDocument) set in a real .doc: what Word
    # writes for a password-protected file. msoffcrypto reads it; we must refuse, not pass.
    data = bytearray(p.corpus("msoffice/test.doc"))
    with olefile.OleFileIO(io.BytesIO(bytes(data))) as ole:
        entry = ole.direntries[ole._find("WordDocument")]
        assert entry.size >= ole.minisectorcutoff  # stored in regular sectors
        offset = (entry.isectStart + 1) * ole.sectorsize
    assert data[offset : offset + 2] == b"\xec\xa5"  # wIdent of a Word 97+ FIB
    (flags,) = struct.unpack_from("<H", data, offset + 10)
    struct.pack_into("<H", data, offset + 10, flags | 0x0100)
    c = check(bytes(data), "意見.doc")
    assert (c.kind, c.format, c.verdict) == ("word", "doc", "encrypted")


# --------------------------------------------------------------------------------------------
# Kind vs. extension


def test_docx_named_xlsx_is_a_mismatch() -> None:
    c = check(p.corpus("msoffice/test.docx"), "意見.xlsx")
    assert (c.kind, c.format, c.verdict, c.detail) == ("word", "docx", "type_mismatch", "extension:xlsx")
    assert check(p.corpus("msoffice/test.xls"), "意見.doc").verdict == "type_mismatch"


@pytest.mark.parametrize(
    ("corpus_name", "filename"),
    [
        ("msoffice/test.docx", "意見.doc"),  # same family, other generation
        ("msoffice/test.doc", "意見.docx"),
        ("msoffice/test.xlsx", "意見.xls"),
        ("msoffice/test.docx", "意見.DOCX"),
        ("msoffice/test.docx", "意見．ｄｏｃｘ"),  # full-width, NFKC
        ("msoffice/test.docx", "意見"),  # no extension
        ("msoffice/test.docx", "C:\\Users\\me\\意見.docx"),
    ],
)
def test_names_that_are_fine(corpus_name: str, filename: str) -> None:
    assert check(p.corpus(corpus_name), filename).verdict == "allowed"


def test_allowed_content_under_a_foreign_extension_is_not_allowed() -> None:
    c = check(p.corpus("msoffice/test.docx"), "意見.exe")
    assert (c.verdict, c.detail) == ("not_allowed", "extension:exe")


def test_detail_never_carries_the_file_name() -> None:
    for name in ("山田太郎の意見.csv", "x.t<script>xt", "秘密.tar.gz"):
        c = check(p.make_text("utf-8"), name)
        assert c.detail is not None and "山田" not in c.detail and "<" not in c.detail
        assert "秘密" not in c.detail


def test_kind_not_in_rules_is_not_allowed() -> None:
    only_word = {"word": ["doc", "docx"]}
    assert classify(p.corpus("msoffice/test.xlsx"), "a.xlsx", None, only_word).verdict == "not_allowed"
    assert classify(p.corpus("msoffice/test.xlsx"), "a.docx", None, only_word).verdict == "type_mismatch"


@needs_soffice
def test_word_template_is_not_allowed() -> None:
    data = p.make_dotx()
    c = check(data, "意見.dotx")
    assert (c.kind, c.format, c.verdict, c.detail) == ("word", "dotx", "not_allowed", "format:dotx")
    assert check(data, "意見.docx").verdict == "not_allowed"


@needs_soffice
def test_excel_template_is_not_allowed() -> None:
    c = check(p.make_xltx(), "意見.xlsx")
    assert (c.kind, c.format, c.verdict) == ("excel", "xltx", "not_allowed")


# --------------------------------------------------------------------------------------------
# Text


@pytest.mark.parametrize(
    ("encoding", "charset"),
    [
        ("utf-8", "utf-8"),
        ("cp932", "cp932"),
        ("euc_jp", "euc-jp"),
        ("utf-16", "utf-16"),
        ("utf-16-be", None),  # no BOM: not text we accept
        ("iso2022_jp", "iso-2022-jp"),
    ],
)
def test_japanese_text(encoding: str, charset: str | None) -> None:
    data = p.make_text(encoding)
    c = check(data, "意見.txt")
    if charset is None:
        assert c.verdict == "type_mismatch" and c.kind == "other"
    else:
        assert (c.kind, c.format, c.verdict, c.detail) == ("text", "txt", "allowed", f"charset:{charset}")


def test_utf16_bom_is_present() -> None:
    assert p.make_text("utf-16")[:2] in (b"\xff\xfe", b"\xfe\xff")


def test_cp932_extensions_and_utf8_bom() -> None:
    assert check("①㈱髙﨑～\r\n".encode("cp932"), "a.txt").verdict == "allowed"
    assert check("\ufeff意見\n".encode(), "a.txt").detail == "charset:utf-8-sig"


def test_iso2022jp_with_cp50221_extensions_is_text() -> None:
    # ① is JIS row 13 (NEC special): ESC $ B 2D 21 ESC ( B. No Python codec decodes it.
    data = b"\x1b$B0U8+\x1b(B: \x1b$B-!\x1b(B\r\n"
    with pytest.raises(UnicodeDecodeError):
        data.decode("iso2022_jp")
    assert check(data, "a.txt").verdict == "allowed"


def test_euc_jp_that_libmagic_calls_a_pgp_key_is_text() -> None:
    data = p.EUC_JP_PGP_LOOKALIKE.encode("euc_jp")
    if "PGP" not in magic.from_buffer(data):
        pytest.skip("this libmagic no longer mistakes the sample for a PGP key")
    c = check(data, "意見.txt")
    assert (c.kind, c.verdict) == ("text", "allowed")


def test_csv_is_not_allowed() -> None:
    c = check(p.make_csv(), "意見.csv")
    assert (c.kind, c.verdict, c.detail) == ("text", "not_allowed", "extension:csv")


@pytest.mark.parametrize(
    "data",
    [
        "意見\x00です".encode(),  # NUL
        "意見\x07です".encode(),  # BEL
        "意見\x1b[31mです".encode(),  # ANSI escape in UTF-8
        b"\x80\x81\x82\xff\xfe\xfd" * 10,  # no charset decodes this
    ],
)
def test_not_text(data: bytes) -> None:
    c = check(data, "意見.txt")
    assert c.kind != "text" and c.verdict == "type_mismatch"


# --------------------------------------------------------------------------------------------
# Bombs, limits, broken containers: a named verdict, and it returns


def test_zip_with_20000_members() -> None:
    c = check(p.make_zip_many_members(), "意見.docx")
    assert (c.format, c.verdict, c.detail) == ("zip", "not_allowed", "limits:members")


def test_zip_of_201_mib_of_zeros() -> None:
    data = p.make_zip_of_zeros()
    assert len(data) < 2 * 1024 * 1024
    c = check(data, "意見.docx")
    assert (c.verdict, c.detail) == ("not_allowed", "limits:uncompressed")


def test_zip_with_forged_sizes() -> None:
    c = check(p.make_zip_forged_size(), "意見.docx")
    assert (c.verdict, c.detail) == ("not_allowed", "limits:uncompressed")


def test_zip_with_absurd_ratio() -> None:
    c = check(p.make_zip_of_zeros(4 * 1024 * 1024), "a.zip")
    assert (c.verdict, c.detail) == ("not_allowed", "limits:ratio")


def test_truncated_docx() -> None:
    c = check(p.make_truncated_docx(), "意見.docx")
    assert (c.verdict, c.detail) == ("not_allowed", "corrupt:zip")


@pytest.mark.parametrize("data", [p.make_corrupt_ole2(), p.make_truncated_ole2()])
def test_corrupt_ole2(data: bytes) -> None:
    c = check(data, "意見.doc")
    assert (c.format, c.verdict, c.detail) == ("ole2", "not_allowed", "corrupt:ole2")


def test_ole2_streams_declaring_more_than_the_file_holds() -> None:
    c = check(p.make_ole2_forged_stream_size(), "意見.doc")
    assert (c.format, c.verdict, c.detail) == ("ole2", "not_allowed", "limits:uncompressed")


@pytest.mark.parametrize(
    ("corpus_name", "limits", "detail"),
    [
        ("msoffice/test.docx", ContainerLimits(max_members=3), "limits:members"),
        ("msoffice/test.docx", ContainerLimits(max_uncompressed=1000), "limits:uncompressed"),
        ("msoffice/test.docx", ContainerLimits(max_member_read=16), "limits:member_read"),
        ("msoffice/test.docx", ContainerLimits(max_depth=0), "limits:depth"),
        ("msoffice/test.docx", ContainerLimits(max_seconds=0.0), "limits:time"),
        ("msoffice/test.doc", ContainerLimits(max_members=2), "limits:members"),
        ("msoffice/test.doc", ContainerLimits(max_depth=0), "limits:depth"),
        ("msoffice/test.doc", ContainerLimits(max_seconds=0.0), "limits:time"),
    ],
)
def test_limits_are_named(corpus_name: str, limits: ContainerLimits, detail: str) -> None:
    c = check(p.corpus(corpus_name), "意見.docx", limits=limits)
    assert (c.verdict, c.detail) == ("not_allowed", detail)


def test_internal_failure_is_a_verdict_not_an_exception() -> None:
    broken_rules = {"word": None}
    c = classify(p.corpus("msoffice/test.docx"), "a.docx", None, broken_rules)  # type: ignore[dict-item]
    assert (c.kind, c.format, c.verdict, c.detail) == ("other", "unknown", "not_allowed", "classify_error:TypeError")


def test_mutated_real_files_never_raise() -> None:
    rnd = random.Random(20251226)
    seeds = [p.corpus(f"msoffice/{n}") for n in ("test.doc", "test.docx", "test.xls", "test.xlsx")]
    seeds += [p.corpus("ichitaro/taro2016_basic.jtd"), p.make_docm(), p.make_xlsm(), p.make_encrypted_docx()]
    for _ in range(400):
        data = bytearray(rnd.choice(seeds))
        if rnd.random() < 0.3:
            data = data[: rnd.randrange(len(data))]
        else:
            for _ in range(rnd.randint(1, 16)):
                data[rnd.randrange(len(data))] = rnd.randrange(256)
        c = check(bytes(data), "意見.doc")
        assert c.detail is None or not c.detail.startswith("classify_error")


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    data=st.one_of(
        st.binary(max_size=4096),
        st.binary(max_size=2048).map(lambda b: b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1" + b),
        st.binary(max_size=2048).map(lambda b: b"PK\x03\x04" + b),
        st.binary(max_size=2048).map(lambda b: b"PK\x03\x04" + b + b"PK\x05\x06" + bytes(18)),
    ),
    filename=st.one_of(st.none(), st.text(max_size=30)),
)
def test_arbitrary_bytes_never_raise(data: bytes, filename: str | None) -> None:
    c = check(data, filename)
    assert c.detail is None or not c.detail.startswith("classify_error")
