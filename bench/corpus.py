"""The benchmark's corpus: realistic public-comment mail, built fast and deterministically.

The mix (issue 9): 70 % short text comments (ISO-2022-JP or UTF-8), 20 % with a Word or Excel 意見書
of 50–300 KB, 5 % with a 5–19 MB attachment, 3 % rejected types, 2 % EICAR. Every message is unique
(its own Message-ID, sender and text), so nothing is recorded as a duplicate.

Attachments carry incompressible bytes (a noise PNG stored uncompressed in the OOXML container) so
that their size is real on the wire, in clamd (which unpacks the zip and reads every member) and in
the intake's memory. MIME is written by hand (base64 at 76 columns, CRLF) because the stdlib's
encoder is too slow for a few gigabytes.
"""

from __future__ import annotations

import base64
import datetime as dt
import io
import json
import random
import struct
import zipfile
import zlib
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from email.header import Header
from email.utils import format_datetime
from pathlib import Path

TEXT_JIS = "text_jis"
TEXT_UTF8 = "text_utf8"
WORD = "word"
EXCEL = "excel"
BIG = "big"
REJECTED = "rejected"
EICAR = "eicar"

# Share of each category of the mix, in percent (text is split evenly between the two charsets).
MIX: dict[str, float] = {TEXT_JIS: 35.0, TEXT_UTF8: 35.0, WORD: 10.0, EXCEL: 10.0, BIG: 5.0, REJECTED: 3.0, EICAR: 2.0}
SMALL_OR_MEDIUM = frozenset({TEXT_JIS, TEXT_UTF8, WORD, EXCEL, REJECTED, EICAR})

MB = 1_000_000
MEDIUM_RANGE = (50 * 1000, 300 * 1000)  # the 意見書's size on disk
BIG_RANGE = (5 * MB, 19 * MB)
EICAR_B64 = "WDVPIVAlQEFQWzRcUFpYNTQoUF4pN0NDKTd9JEVJQ0FSLVNUQU5EQVJELUFOVElWSVJVUy1URVNULUZJTEUhJEgrSCo="

_PHRASES = [
    "本編の第2章について意見を申し上げます。", "別添の付属資料P.12の記載は分かりにくいと考えます。",
    "生成AIの利用に伴うリスクの整理は重要です。", "中小企業にとって対策の負担が大きすぎます。",
    "具体的な事例を追加していただきたい。", "用語の定義を明確にすべきです。",
    "学習データの管理について記述が不足しています。",
    "プロンプトインジェクションへの対策を明記してください。", "第3章3.2節の表現を見直すべきと考えます。",
    "利用者への説明責任について触れるべきです。", "国際的な基準との整合性を確保してください。",
    "脆弱性情報の共有体制を整備することが望ましい。", "本ガイドライン（案）の趣旨に賛成します。",
    "運用段階での監視について具体例を示してください。", "開発者と提供者の責任分担が不明確です。",
    "個人情報の取扱いに関する記載を充実させるべきです。", "P.25の図表の説明を補足していただきたい。",
    "検証環境の整備に対する支援策を検討してください。", "教育・研修の重要性を強調すべきと考えます。",
    "サプライチェーン全体での対策が必要です。",
]
_NAMES = ["山田太郎", "鈴木花子", "佐藤一郎", "高橋美咲", "田中健二", "伊藤直子", "渡辺誠", "中村由美"]
_ORGS = ["株式会社サンプル情報", "一般社団法人テスト協会", "有限会社見本商事", "NPO法人デジタル市民"]
_PREFS = ["東京都千代田区霞が関2-1-2", "大阪府大阪市北区1-1-1", "福岡県福岡市中央区3-4-5", "北海道札幌市中央区6-7"]


@dataclass(frozen=True)
class Item:
    index: int
    kind: str
    path: str
    size: int  # bytes of the .eml as delivered
    message_id: str


def plan(n: int, seed: int = 9, small_only: bool = False) -> list[str]:
    """The category of each of n messages: the exact mix (largest remainders), shuffled deterministically.
    small_only: the text comments alone (half ISO-2022-JP, half UTF-8), for long runs."""
    mix = {TEXT_JIS: 50.0, TEXT_UTF8: 50.0} if small_only else MIX
    exact = {k: n * p / 100 for k, p in mix.items()}
    counts = {k: int(v) for k, v in exact.items()}
    for k in sorted(exact, key=lambda k: exact[k] - counts[k], reverse=True)[: n - sum(counts.values())]:
        counts[k] += 1
    kinds = [k for k, c in counts.items() for _ in range(c)]
    random.Random(seed).shuffle(kinds)
    return kinds


# -- bodies -------------------------------------------------------------------------------------------
def _comment_text(rng: random.Random, i: int, items: int) -> str:
    name = rng.choice(_NAMES)
    lines = [f"氏名：{name}", f"住所：{rng.choice(_PREFS)}", f"電話番号：03-{rng.randint(1000, 9999)}-{i % 10000:04d}",
             f"受付番号：{i}", ""]
    for k in range(1, items + 1):
        lines.append(f"【意見{k}】")
        lines.append(f"該当箇所：本編 P.{rng.randint(1, 80)}")
        lines.append("意見：" + "".join(rng.choice(_PHRASES) for _ in range(rng.randint(2, 6))))
        lines.append("理由：" + "".join(rng.choice(_PHRASES) for _ in range(rng.randint(1, 4))))
        lines.append("")
    return "\r\n".join(lines) + "\r\n"


def _b64_lines(data: bytes) -> bytes:
    return base64.encodebytes(data).replace(b"\n", b"\r\n")


def _headers(i: int, rng: random.Random, subject: str, extra: list[str], token: str) -> tuple[bytes, str]:
    msgid = f"<bench-{token}-{i:06d}@bench.example.jp>"
    when = dt.datetime(2026, 1, 10, 9, 0, tzinfo=dt.timezone(dt.timedelta(hours=9))) + dt.timedelta(seconds=i)
    head = [
        f"Received: from mx{i % 7}.example.jp by mail.example.go.jp; {format_datetime(when)}",
        f"From: user{i}@example.jp",
        "To: security-ai@example.go.jp",
        "Subject: " + Header(subject, "utf-8").encode(),
        f"Message-ID: {msgid}",
        f"Date: {format_datetime(when - dt.timedelta(seconds=rng.randint(5, 300)))}",
        "MIME-Version: 1.0",
        *extra,
    ]
    return ("\r\n".join(head) + "\r\n").encode("ascii"), msgid


def text_message(i: int, rng: random.Random, jis: bool, token: str) -> tuple[bytes, str]:
    body = _comment_text(rng, i, rng.randint(1, 3))
    if jis:
        ctype = ["Content-Type: text/plain; charset=ISO-2022-JP", "Content-Transfer-Encoding: 7bit"]
        payload = body.encode("iso-2022-jp")
    else:
        ctype = ["Content-Type: text/plain; charset=UTF-8", "Content-Transfer-Encoding: base64"]
        payload = _b64_lines(body.encode("utf-8"))
    head, msgid = _headers(i, rng, f"意見提出 {i}", ctype, token)
    return head + b"\r\n" + payload, msgid


def _multipart(i: int, rng: random.Random, token: str, body: str,
               attachments: list[tuple[str, str, bytes]]) -> tuple[bytes, str]:
    boundary = f"=_bench_{token}_{i}"
    ctype = f'Content-Type: multipart/mixed; boundary="{boundary}"'
    head, msgid = _headers(i, rng, f"意見書の提出 {i}", [ctype], token)
    out = io.BytesIO()
    out.write(head + b"\r\n")
    out.write(f"--{boundary}\r\nContent-Type: text/plain; charset=UTF-8\r\nContent-Transfer-Encoding: base64\r\n\r\n"
              .encode())
    out.write(_b64_lines(body.encode("utf-8")))
    for filename, ctype, data in attachments:
        name = Header(filename, "utf-8").encode()
        out.write(f"--{boundary}\r\nContent-Type: {ctype}; name=\"{name}\"\r\n"
                  f"Content-Disposition: attachment; filename=\"{name}\"\r\n"
                  "Content-Transfer-Encoding: base64\r\n\r\n".encode())
        out.write(_b64_lines(data))
    out.write(f"--{boundary}--\r\n".encode())
    return out.getvalue(), msgid


# -- attachments ----------------------------------------------------------------------------------------
def noise_png(size: int, rng: random.Random) -> bytes:
    """A valid RGB PNG of about `size` bytes whose pixels are noise, its IDAT stored uncompressed."""
    width = 512
    row = 1 + 3 * width
    height = max(1, size // row)
    raw = bytearray(rng.randbytes(height * row))
    raw[0::row] = bytes(height)  # filter type 0 on every scanline
    idat = zlib.compress(bytes(raw), 0)

    def chunk(tag: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + tag + data + struct.pack(">I", zlib.crc32(tag + data))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", idat) + chunk(b"IEND", b"")


_TINY_PNG = noise_png(64, random.Random(0))


def _with_media(container: bytes, media_name: str, media: bytes) -> bytes:
    """Rewrite an OOXML zip with its picture replaced by `media`, stored (not deflated)."""
    src = zipfile.ZipFile(io.BytesIO(container))
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as dst:
        for info in src.infolist():
            if info.filename == media_name:
                dst.writestr(zipfile.ZipInfo(info.filename, info.date_time), media, compress_type=zipfile.ZIP_STORED)
            else:
                dst.writestr(info, src.read(info.filename))
    return out.getvalue()


def make_docx(text: str, total: int, rng: random.Random) -> bytes:
    import docx
    from docx.shared import Cm

    doc = docx.Document()
    doc.add_heading("意見書", level=1)
    for line in text.splitlines():
        doc.add_paragraph(line)
    doc.add_picture(io.BytesIO(_TINY_PNG), width=Cm(4))
    small = io.BytesIO()
    doc.save(small)
    base = small.getvalue()
    media = next(n for n in zipfile.ZipFile(io.BytesIO(base)).namelist() if n.startswith("word/media/"))
    return _with_media(base, media, noise_png(max(64, total - len(base)), rng))


def make_xlsx(text: str, total: int, rng: random.Random) -> bytes:
    import xlsxwriter

    out = io.BytesIO()
    wb = xlsxwriter.Workbook(out, {"in_memory": True})
    ws = wb.add_worksheet("意見書")
    ws.write_row(0, 0, ["該当箇所", "意見", "理由"])
    r = 1
    for line in text.splitlines():
        if line.startswith("意見："):
            ws.write_row(r, 0, [f"本編 P.{rng.randint(1, 80)}", line[3:], rng.choice(_PHRASES)])
            r += 1
    ws.insert_image(r + 2, 0, "figure.png", {"image_data": io.BytesIO(_TINY_PNG)})
    wb.close()
    base = out.getvalue()
    media = next(n for n in zipfile.ZipFile(io.BytesIO(base)).namelist() if n.startswith("xl/media/"))
    return _with_media(base, media, noise_png(max(64, total - len(base)), rng))


def _pdf(rng: random.Random) -> bytes:
    stream = b"BT /F1 12 Tf 72 720 Td (comment) Tj ET\n" + b"% " + rng.randbytes(8000).hex().encode() + b"\n"
    objs = [b"<< /Type /Catalog /Pages 2 0 R >>", b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
            b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Contents 4 0 R >>",
            b"<< /Length %d >>\nstream\n" % len(stream) + stream + b"endstream"]
    out = io.BytesIO(b"%PDF-1.4\n")
    offsets = []
    for k, body in enumerate(objs, 1):
        offsets.append(out.tell())
        out.write(b"%d 0 obj\n" % k + body + b"\nendobj\n")
    xref = out.tell()
    out.write(b"xref\n0 %d\n0000000000 65535 f \n" % (len(objs) + 1))
    for off in offsets:
        out.write(b"%010d 00000 n \n" % off)
    out.write(b"trailer\n<< /Size %d /Root 1 0 R >>\nstartxref\n%d\n%%%%EOF\n" % (len(objs) + 1, xref))
    return out.getvalue()


def _zip(text: str) -> bytes:
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as z:
        z.writestr("意見.txt", text.encode("utf-8"))
    return out.getvalue()


def _pe(rng: random.Random) -> bytes:
    dos = bytearray(0x80)
    dos[0:2] = b"MZ"
    struct.pack_into("<I", dos, 0x3C, 0x80)
    coff = struct.pack("<HHIIIHH", 0x014C, 0, 0, 0, 0, 0xE0, 0x0102)
    optional = bytearray(0xE0)
    struct.pack_into("<H", optional, 0, 0x010B)
    struct.pack_into("<H", optional, 68, 3)
    return bytes(dos) + b"PE\x00\x00" + coff + bytes(optional) + rng.randbytes(4096)


# -- one message ------------------------------------------------------------------------------------
def build(i: int, kind: str, token: str, seed: int = 9) -> tuple[bytes, str]:
    """The raw bytes and Message-ID of message i of the given category."""
    rng = random.Random(f"{seed}:{i}")
    if kind in (TEXT_JIS, TEXT_UTF8):
        return text_message(i, rng, kind == TEXT_JIS, token)
    text = _comment_text(rng, i, rng.randint(2, 8))
    cover = f"意見書を添付いたします。\r\n受付番号：{i}\r\n"
    if kind == WORD:
        return _multipart(i, rng, token, cover, [(
            "意見書.docx", "application/vnd.openxmlformats-officedocument.wordprocessingml.document",
            make_docx(text, rng.randint(*MEDIUM_RANGE), rng))])
    if kind == EXCEL:
        return _multipart(i, rng, token, cover, [(
            "意見書.xlsx", "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
            make_xlsx(text, rng.randint(*MEDIUM_RANGE), rng))])
    if kind == BIG:
        # Spread evenly over 5–19 MB by index; above ~15.3 MB the encoded message is over the 20 MiB limit.
        total = BIG_RANGE[0] + (i * 7919 % 1000) * (BIG_RANGE[1] - BIG_RANGE[0]) // 999
        if i % 2:
            return _multipart(i, rng, token, cover, [(
                "意見書.docx", "application/vnd.openxmlformats-officedocument.wordprocessingml.document",
                make_docx(text, total, rng))])
        return _multipart(i, rng, token, cover, [(
            "意見書.xlsx", "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
            make_xlsx(text, total, rng))])
    if kind == REJECTED:
        which = i % 3
        part = [("意見書.pdf", "application/pdf", _pdf(rng)), ("意見.zip", "application/zip", _zip(text)),
                ("viewer.exe", "application/octet-stream", _pe(rng))][which]
        return _multipart(i, rng, token, cover, [part])
    if kind == EICAR:
        return _multipart(i, rng, token, text, [("readme.txt", "text/plain", base64.b64decode(EICAR_B64))])
    raise ValueError(kind)


def write(folder: Path, n: int, token: str, seed: int = 9, small_only: bool = False) -> list[Item]:
    """Write n messages as folder/NNNNNN.eml and a manifest.json; return the manifest."""
    folder.mkdir(parents=True, exist_ok=True)
    items: list[Item] = []
    for i, kind in enumerate(plan(n, seed, small_only)):
        raw, msgid = build(i, kind, token, seed)
        path = folder / f"{i:06d}.eml"
        path.write_bytes(raw)
        items.append(Item(i, kind, str(path), len(raw), msgid))
    (folder / "manifest.json").write_text(json.dumps([asdict(x) for x in items]))
    return items


def iter_raw(items: list[Item]) -> Iterator[tuple[Item, bytes]]:
    for item in items:
        yield item, Path(item.path).read_bytes()
