"""Tests for daemon.decode: charsets of bodies, headers and file names in Japanese mail.

Expected bytes are built the way real mailers build them, with helpers written here independently
of the decoder under test (Shift_JIS -> JIS conversion, RFC 2047/2231 encoding), plus some
hand-written byte strings.
"""

from __future__ import annotations

import base64
import email
import email.message
import email.policy
from email.policy import Policy
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from daemon.decode import (
    Decoded,
    decode_bytes,
    decode_filename,
    decode_header,
    normalize_charset,
    part_text,
)

from conftest import CORPUS
from japanese import EUC_PROBE, PROBE, b_word, percent, sjis_to_jis, to_cp50221

POLICIES = [pytest.param(email.policy.compat32, id="compat32"), pytest.param(email.policy.default, id="default")]
REAL_EML = sorted((CORPUS / "eml").glob("*.eml"))


def message(headers: list[str | bytes], body: bytes, policy: Policy) -> email.message.Message:
    lines = [h.encode("ascii") if isinstance(h, str) else h for h in headers]
    raw = b"\r\n".join([*lines, b"", body])
    return email.message_from_bytes(raw, policy=policy)


def check(d: Decoded | None, text: str, decoder: str, replaced: int = 0) -> None:
    assert d is not None
    assert (d.text, d.decoder, d.replaced) == (text, decoder, replaced)


# ---------------------------------------------------------------------------------------------
# Helpers sanity: the converter agrees with hand-written bytes
# ---------------------------------------------------------------------------------------------


def test_helper_matches_hand_written_bytes() -> None:
    assert to_cp50221("テスト") == b"\x1b$B%F%9%H\x1b(B"
    assert to_cp50221("①") == b"\x1b$B-!\x1b(B"
    assert to_cp50221("ｶﾀｶﾅ") == b"\x1b(I6@6E\x1b(B"
    assert to_cp50221("髙") == b"\x1b$B|b\x1b(B"  # NEC-selected IBM extension, JIS row 92
    assert to_cp50221("～") == b"\x1b$B!A\x1b(B"


def test_python_iso2022_jp_cannot_do_it() -> None:
    """Why the module exists: Python's codecs lose the NEC characters."""
    data = to_cp50221(PROBE)
    assert data.decode("iso2022_jp", "replace") != PROBE
    with pytest.raises(UnicodeDecodeError):
        data.decode("iso2022_jp_2")


# ---------------------------------------------------------------------------------------------
# normalize_charset
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "label",
    ["shift_jis", "SJIS", "x-sjis", "Shift-JIS", "MS_Kanji", "Windows-31J", "csWindows31J", "CP932",
     "ms932", '"Shift_JIS"'],
)
def test_sjis_aliases(label: str) -> None:
    assert normalize_charset(label) == "cp932"


@pytest.mark.parametrize(
    "label",
    ["ISO-2022-JP", "iso-2022-jp-ms", "CP50220", "cp50221", "cp50222", "ISO-2022-JP-1", "iso-2022-jp-2",
     "iso-2022-jp-3", "csISO2022JP"],
)
def test_iso2022jp_aliases(label: str) -> None:
    assert normalize_charset(label) == "cp50221"


@pytest.mark.parametrize(
    ("label", "expected"),
    [
        ("EUC-JP", "euc-jp"),
        ("x-euc-jp", "euc-jp"),
        ("eucJP-ms", "eucjp-ms"),
        ("CP51932", "eucjp-ms"),
        ("UTF8", "utf-8"),
        ("utf-8", "utf-8"),
        ("ISO-8859-1", "latin-1"),
        ("latin1", "latin-1"),
        ("US-ASCII", "ascii"),
        ("windows-1252", "cp1252"),
        ("ks_c_5601-1987", "cp949"),
        ("UTF-16", "utf-16"),
        (None, None),
        ("", None),
        ("unknown-8bit", None),
        ("no-such-charset", None),
        ("base64", None),  # a Python codec, but not a charset
    ],
)
def test_normalize_other(label: str | None, expected: str | None) -> None:
    assert normalize_charset(label) == expected


# ---------------------------------------------------------------------------------------------
# The hand-written CP50221 decoder
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("data", "text"),
    [
        (b"\x1b$B%F%9%H\x1b(B", "テスト"),
        (b"\x1b$B-!\x1b(B", "①"),
        (b"\x1b(I6@6E\x1b(B", "ｶﾀｶﾅ"),
        (b"\x1b$@%F%9%H\x1b(J abc", "テスト abc"),  # old JIS C 6226 designation, JIS Roman
        (b"\x1b$B-j\x1b(B", "㈱"),
        (b"\x1b$B|b\x1b(B", "髙"),
        (b"\x1b$B!A\x1b(B", "\uff5e"),  # the wave dash as cp932/Windows shows it
        (b"a\x0e6@6E\x0fb", "aｶﾀｶﾅb"),  # CP50222 SO/SI
        (b"\x1b$B%F%9%H\r\nabc", "テスト\r\nabc"),  # forgotten ESC ( B before the line end
        (b"\x1b$(D\x22\x2f\x1b(B", "\u02d8"),  # JIS X 0212 (breve)
    ],
)
def test_cp50221_escape_sequences(data: bytes, text: str) -> None:
    check(decode_bytes(data, "iso-2022-jp"), text, "cp50221")


def test_cp50221_probe() -> None:
    check(decode_bytes(to_cp50221(PROBE), "ISO-2022-JP"), PROBE, "cp50221")


# ---------------------------------------------------------------------------------------------
# Bodies in whole messages
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("policy", POLICIES)
@pytest.mark.parametrize(
    "content_type",
    [
        "Content-Type: text/plain; charset=ISO-2022-JP",
        'Content-Type: text/plain; charset="iso-2022-jp"',
        "Content-Type: text/plain",  # no charset parameter
        None,  # no Content-Type at all
    ],
)
def test_iso2022jp_body(policy: Policy, content_type: str | None) -> None:
    body = to_cp50221(PROBE + "\r\n2行目\r\n")
    headers = ["From: a@example.jp", "Subject: test", "MIME-Version: 1.0"]
    if content_type:
        headers += [content_type, "Content-Transfer-Encoding: 7bit"]
    msg = message(headers, body, policy)
    check(part_text(msg), PROBE + "\r\n2行目\r\n", "cp50221")


@pytest.mark.parametrize("policy", POLICIES)
@pytest.mark.parametrize("label", ["Shift_JIS", "Windows-31J", "CP932", "x-sjis"])
@pytest.mark.parametrize("cte", ["8bit", "base64"])
def test_cp932_body(policy: Policy, label: str, cte: str) -> None:
    text = PROBE + "〜です\r\n"  # 〜 is typed on a Mac; cp932 has no U+301C, Windows sends ～
    raw = (PROBE + "～です\r\n").encode("cp932")
    body = base64.encodebytes(raw).replace(b"\n", b"\r\n") if cte == "base64" else raw
    msg = message(
        ["From: a@example.jp", "MIME-Version: 1.0", f"Content-Type: text/plain; charset={label}",
         f"Content-Transfer-Encoding: {cte}"],
        body,
        policy,
    )
    d = part_text(msg)
    check(d, text.replace("〜", "～"), "cp932")


@pytest.mark.parametrize("policy", POLICIES)
@pytest.mark.parametrize("label", ["EUC-JP", None])
def test_euc_jp_txt_attachment(policy: Policy, label: str | None) -> None:
    data = (EUC_PROBE + "\n").encode("euc_jp")
    charset = f"; charset={label}" if label else ""
    msg = message(
        ["From: a@example.jp", "MIME-Version: 1.0", 'Content-Type: multipart/mixed; boundary="b"', "",
         "--b", "Content-Type: text/plain; charset=US-ASCII", "", "see attachment", "--b",
         f'Content-Type: text/plain{charset}; name="memo.txt"', "Content-Disposition: attachment; filename=memo.txt",
         "Content-Transfer-Encoding: base64", "", base64.b64encode(data).decode(), "--b--"],
        b"",
        policy,
    )
    parts = [p for p in msg.walk() if not p.is_multipart()]
    check(part_text(parts[0]), "see attachment", "ascii")
    check(part_text(parts[1]), EUC_PROBE + "\n", "euc-jp")
    check(decode_filename(parts[1]), "memo.txt", "ascii")


# eucJP-ms bytes as glibc iconv -t EUC-JP-MS writes テスト①㈱髙﨑～: NEC row 13 at 0xAD, the IBM
# extensions 髙﨑 in the JIS X 0212 user area (0x8F 0xF4..), the wave dash 0xA1C1.
EUCJP_MS_BYTES = bytes.fromhex("a5c6a5b9a5c8" "ada1adea" "8ff4fb8ff4bd" "a1c1")
EUCJP_MS_TEXT = "テスト①㈱髙﨑～"


@pytest.mark.parametrize("policy", POLICIES)
@pytest.mark.parametrize("label", ["EUC-JP", "eucJP-ms", None])
def test_eucjp_ms_body(policy: Policy, label: str | None) -> None:
    charset = f"; charset={label}" if label else ""
    msg = message(
        ["MIME-Version: 1.0", f"Content-Type: text/plain{charset}", "Content-Transfer-Encoding: 8bit"],
        EUCJP_MS_BYTES + b"\r\n",
        policy,
    )
    d = part_text(msg)
    check(d, EUCJP_MS_TEXT + "\r\n", "eucjp-ms")
    wrong = EUCJP_MS_BYTES.decode("euc_jis_2004")  # "succeeds", with wrong kanji and no U+FFFD
    assert "\ufffd" not in wrong
    assert d.text.rstrip() != wrong


def test_eucjp_ms_row13_only() -> None:
    data = "①㈱の件".encode("cp932")  # build EUC from SJIS: same JIS pair + 0x8080
    euc = bytearray()
    for i in range(0, len(data), 2):
        j1, j2 = sjis_to_jis(data[i], data[i + 1])
        euc += bytes((j1 | 0x80, j2 | 0x80))
    check(decode_bytes(bytes(euc), "euc-jp"), "①㈱の件", "eucjp-ms")


@pytest.mark.parametrize("policy", POLICIES)
@pytest.mark.parametrize(
    ("label", "cte"), [("iso-8859-1", "8bit"), ("us-ascii", "8bit"), ("Shift_JIS", "quoted-printable")]
)
def test_utf8_with_wrong_label(policy: Policy, label: str, cte: str) -> None:
    raw = (PROBE + "\r\n").encode("utf-8")
    body = raw if cte == "8bit" else "".join(f"={b:02X}" if b >= 0x80 else chr(b) for b in raw).encode()
    msg = message(
        ["MIME-Version: 1.0", f"Content-Type: text/plain; charset={label}", f"Content-Transfer-Encoding: {cte}"],
        body,
        policy,
    )
    check(part_text(msg), PROBE + "\r\n", "utf-8")


@pytest.mark.parametrize("policy", POLICIES)
@pytest.mark.parametrize("codec", ["utf-16", "utf-16-be"])
def test_utf16_with_bom(policy: Policy, codec: str) -> None:
    raw = ("\ufeff" if codec == "utf-16-be" else "") + PROBE + "\r\n"
    data = raw.encode(codec)
    assert data[:2] in (b"\xff\xfe", b"\xfe\xff")
    msg = message(
        ["MIME-Version: 1.0", "Content-Type: text/plain; charset=UTF-16", "Content-Transfer-Encoding: base64"],
        base64.encodebytes(data).replace(b"\n", b"\r\n"),
        policy,
    )
    check(part_text(msg), PROBE + "\r\n", "utf-16")


def test_genuine_latin1_stays_latin1() -> None:
    check(decode_bytes("Ankündigung für Glashütte\r\n".encode("latin-1"), "iso-8859-1"),
          "Ankündigung für Glashütte\r\n", "latin-1")


def test_cp932_labelled_latin1() -> None:
    text = "パブリックコメントへの意見"
    check(decode_bytes(text.encode("cp932"), "iso-8859-1"), text, "cp932")


def test_euc_labelled_shift_jis() -> None:
    check(decode_bytes("意見募集の案内です".encode("euc_jp"), "shift_jis"), "意見募集の案内です", "euc-jp")


def test_ascii_and_empty() -> None:
    check(decode_bytes(b"hello\r\n", "iso-2022-jp"), "hello\r\n", "ascii")
    check(decode_bytes(b"", "utf-8"), "", "utf-8")
    check(decode_bytes(b""), "", "ascii")


@pytest.mark.parametrize(
    ("data", "label", "decoder"),
    [
        (b"\x1b$B%F\x22\x2f%H\x1b(B", "iso-2022-jp", "cp50221"),  # 0x222F is not in JIS X 0208
        (b"\x1b$B%F%\x1b(B", "iso-2022-jp", "cp50221"),  # odd byte in a two-byte run
        ("テスト".encode()[:-1] + b"\xff", "utf-8", "utf-8"),
    ],
)
def test_broken_input_reports_replacements(data: bytes, label: str, decoder: str) -> None:
    d = decode_bytes(data, label)
    assert d.decoder == decoder
    assert d.replaced > 0
    assert d.text.count("\ufffd") == d.replaced


def test_broken_body_in_message() -> None:
    msg = message(
        ["MIME-Version: 1.0", "Content-Type: text/plain; charset=iso-2022-jp"],
        b"\x1b$B%F%9%H\x1b(B ok \x1b$B\x22\x2f\x1b(B\r\n",
        email.policy.compat32,
    )
    d = part_text(msg)
    assert (d.decoder, d.replaced) == ("cp50221", 1)
    assert d.text.startswith("テスト ok ")


# ---------------------------------------------------------------------------------------------
# Headers (RFC 2047, raw 8-bit)
# ---------------------------------------------------------------------------------------------


def _subject_of(msg: email.message.Message) -> Decoded:
    values = [v for k, v in msg.raw_items() if k.lower() == "subject"]
    return decode_header(values[0])


@pytest.mark.parametrize("policy", POLICIES)
def test_subject_iso2022jp_one_word(policy: Policy) -> None:
    msg = message([f"Subject: {b_word('ISO-2022-JP', to_cp50221(PROBE))}", "From: a@example.jp"], b"x", policy)
    check(_subject_of(msg), PROBE, "cp50221")


@pytest.mark.parametrize("policy", POLICIES)
@pytest.mark.parametrize("cut", [3, 4, 5, 8])  # inside ESC $ B, and in the middle of a character
def test_subject_iso2022jp_split_words(policy: Policy, cut: int) -> None:
    jis = to_cp50221("件名：" + PROBE)
    words = f"{b_word('ISO-2022-JP', jis[:cut])}\r\n {b_word('iso-2022-jp', jis[cut:])}"
    msg = message([f"Subject: Re: {words}", "From: a@example.jp"], b"x", policy)
    check(_subject_of(msg), "Re: 件名：" + PROBE, "cp50221")
    if policy is email.policy.compat32:
        check(decode_header(msg["Subject"]), "Re: 件名：" + PROBE, "cp50221")


def test_subject_utf8_split_mid_character() -> None:
    data = PROBE.encode("utf-8")
    value = f"{b_word('UTF-8', data[:4])} {b_word('utf-8', data[4:])}"
    check(decode_header(value), PROBE, "utf-8")


def test_header_mixed_words() -> None:
    value = f"=?utf-8?q?caf=C3=A9?= and {b_word('iso-2022-jp', to_cp50221('①'))}"
    check(decode_header(value), "café and ①", "utf-8+cp50221")


@pytest.mark.parametrize("policy", POLICIES)
@pytest.mark.parametrize(("codec", "decoder"), [("utf-8", "utf-8"), ("cp932", "cp932")])
def test_subject_raw_8bit(policy: Policy, codec: str, decoder: str) -> None:
    subject = "意見：" + PROBE
    msg = message([b"Subject: " + subject.encode(codec), b"From: a@example.jp"], b"x", policy)
    check(_subject_of(msg), subject, decoder)
    if policy is email.policy.compat32:  # compat32 hands back an email.header.Header here
        check(decode_header(msg["Subject"]), subject, decoder)


def test_header_from_bytes_and_surrogates() -> None:
    raw = "髙﨑様".encode("cp932")
    check(decode_header(raw), "髙﨑様", "cp932")
    check(decode_header(raw.decode("ascii", "surrogateescape")), "髙﨑様", "cp932")


def test_header_raw_jis() -> None:
    check(decode_header(b"Re: " + to_cp50221("テスト")), "Re: テスト", "cp50221")


# ---------------------------------------------------------------------------------------------
# File names (RFC 2231, RFC 2047, raw 8-bit)
# ---------------------------------------------------------------------------------------------


def _attachment(disposition: list[str | bytes], policy: Policy, ctype: str | bytes = "application/pdf"
                ) -> email.message.Message:
    headers: list[str | bytes] = [
        "MIME-Version: 1.0", 'Content-Type: multipart/mixed; boundary="b"', "", "--b",
        ctype if isinstance(ctype, bytes) else f"Content-Type: {ctype}",
        *disposition, "Content-Transfer-Encoding: base64", "", "JVBERi0=", "--b--",
    ]
    msg = message(headers, b"", policy)
    return next(p for p in msg.walk() if not p.is_multipart())


@pytest.mark.parametrize("policy", POLICIES)
@pytest.mark.parametrize("cut", [3, 5, 6, 11])  # after ESC $ B %F (the brief's example), mid-ESC, mid-pair
def test_filename_rfc2231_split(policy: Policy, cut: int) -> None:
    name = PROBE + ".pdf"
    jis = to_cp50221(name)
    part = _attachment(
        ["Content-Disposition: attachment;",
         f" filename*0*=iso-2022-jp''{percent(jis[:cut])};",
         f" filename*1*={percent(jis[cut:])}"],
        policy,
    )
    check(decode_filename(part), name, "cp50221")


@pytest.mark.parametrize("policy", POLICIES)
def test_filename_rfc2231_brief_example(policy: Policy) -> None:
    part = _attachment(
        ["Content-Disposition: attachment; filename*0*=iso-2022-jp''%1B%24B%25F;",
         " filename*1*=%25%39%25%48%1B%28B.txt"],
        policy,
    )
    check(decode_filename(part), "テスト.txt", "cp50221")


@pytest.mark.parametrize("policy", POLICIES)
def test_filename_rfc2231_mixed_segments_and_utf8(policy: Policy) -> None:
    data = "意見書①.docx".encode()
    part = _attachment(
        ["Content-Disposition: attachment; filename=\"fallback.docx\";",
         f" filename*0*=UTF-8'ja'{percent(data[:7])}; filename*1*={percent(data[7:-5])};",
         ' filename*2=".docx"'],
        policy,
    )
    check(decode_filename(part), "意見書①.docx", "utf-8")


@pytest.mark.parametrize("policy", POLICIES)
def test_filename_rfc2047_in_quotes(policy: Policy) -> None:
    words = b_word("ISO-2022-JP", to_cp50221(PROBE[:7])) + " " + b_word("ISO-2022-JP", to_cp50221(PROBE[7:]))
    part = _attachment([f'Content-Disposition: attachment; filename="{words}.pdf"'], policy,
                       ctype=f'application/pdf; name="{words}.pdf"')
    check(decode_filename(part), PROBE + ".pdf", "cp50221")


@pytest.mark.parametrize("policy", POLICIES)
def test_filename_raw_cp932_with_backslash_trail_bytes(policy: Policy) -> None:
    name = "ソフト表.txt"  # ソ = 83 5C and 表 = 95 5C: the trail byte is a backslash
    raw = name.encode("cp932")
    assert b"\\" in raw
    part = _attachment([b'Content-Disposition: attachment; filename="' + raw + b'"; size=10'], policy)
    check(decode_filename(part), name, "cp932")


@pytest.mark.parametrize("policy", POLICIES)
def test_filename_from_content_type_name(policy: Policy) -> None:
    part = _attachment([], policy, ctype=f"application/pdf; name*=utf-8''{percent('案.pdf'.encode())}")
    check(decode_filename(part), "案.pdf", "utf-8")


@pytest.mark.parametrize("policy", POLICIES)
def test_no_filename(policy: Policy) -> None:
    part = _attachment(["Content-Disposition: inline"], policy)
    assert decode_filename(part) is None


# ---------------------------------------------------------------------------------------------
# Real mail
# ---------------------------------------------------------------------------------------------


@pytest.mark.skipif(not REAL_EML, reason="real corpus not available")
@pytest.mark.parametrize("policy", POLICIES)
@pytest.mark.parametrize("path", REAL_EML, ids=lambda p: p.name)
def test_real_mail_decodes_cleanly(policy: Policy, path: Path) -> None:
    msg = email.message_from_bytes(path.read_bytes(), policy=policy)
    texts = 0
    for part in msg.walk():
        for name, value in part.raw_items():
            d = decode_header(value)
            assert d.replaced == 0, f"header {name}: {d.decoder}"
            assert "\ufffd" not in d.text, f"header {name}"
        fn = decode_filename(part)
        if fn is not None:
            assert fn.replaced == 0 and fn.text
        if part.get_content_maintype() == "text":
            d = part_text(part)
            assert d.replaced == 0, f"{part.get_content_type()}: {d.decoder}"
            assert "\ufffd" not in d.text
            texts += 1
    assert texts >= 1


def test_real_mail_sample3_filename() -> None:
    path = CORPUS / "eml" / "sample3.eml"
    if not path.exists():
        pytest.skip("real corpus not available")
    msg = email.message_from_bytes(path.read_bytes(), policy=email.policy.compat32)
    names = [d for p in msg.walk() if (d := decode_filename(p)) is not None]
    # The sender's ISO-2022-JP filename* lost the combining sound mark: "?" is in the bytes.
    assert [(d.text, d.decoder) for d in names] == [("PDFサンフ?ル.pdf", "cp50221"), ("sample.zip", "ascii")]


def test_iso2022jp_label_on_shift_jis_bytes() -> None:
    check(decode_bytes("ご意見：①髙﨑\r\n".encode("cp932"), "ISO-2022-JP"), "ご意見：①髙﨑\r\n", "cp932")


# ---------------------------------------------------------------------------------------------
# Robustness
# ---------------------------------------------------------------------------------------------

LABELS = st.sampled_from([None, "iso-2022-jp", "shift_jis", "euc-jp", "utf-8", "iso-8859-1", "us-ascii",
                          "utf-16", "bogus"])


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=200), LABELS)
def test_decode_bytes_never_raises(data: bytes, label: str | None) -> None:
    d = decode_bytes(data, label)
    assert isinstance(d.text, str) and d.decoder
    assert 0 <= d.replaced <= d.text.count("\ufffd")


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=120))
def test_decode_header_never_raises(data: bytes) -> None:
    d = decode_header(b"=?iso-2022-jp?B?" + base64.b64encode(data) + b"?= " + data)
    assert 0 <= d.replaced <= d.text.count("\ufffd")
