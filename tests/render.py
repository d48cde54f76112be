"""Documents as a reader sees them: LibreOffice prints them to PDF, poppler reads the PDF back.

`to_pdf` converts a .docx/.xlsx with `soffice --headless` in a private profile (parallel runs would otherwise
fight over one profile and fail at random); `pdf_text` and `pdf_page_texts` give the text as laid out on the
page, `column_texts` the text of one table column; `pdf_pages` and `pdf_page_size` what pdfinfo says;
`save_pages` renders PNGs into var/documents/ (ignored by git) so that a person can look at what the test
looked at.
"""

from __future__ import annotations

import html
import re
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DOCUMENTS = ROOT / "var" / "documents"


class RenderError(RuntimeError):
    pass


def available() -> bool:
    return all(shutil.which(t) for t in ("soffice", "pdftotext", "pdfinfo", "pdftoppm"))


def _run(cmd: list[str], timeout: float = 180) -> str:
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    if done.returncode != 0:
        last = (done.stderr.strip().splitlines() or [""])[-1]
        raise RenderError(f"{cmd[0]} failed ({done.returncode}): {last}")
    return done.stdout


def to_pdf(path: Path) -> Path:
    """`path` printed to PDF by LibreOffice, next to it as <name>.pdf (t.docx → t.docx.pdf, so that a .docx
    and an .xlsx of the same stem do not overwrite each other)."""
    path = Path(path)
    with tempfile.TemporaryDirectory(prefix="render-lo-") as tmp:
        outdir = Path(tmp) / "out"
        _run(["soffice", f"-env:UserInstallation=file://{tmp}/profile", "--headless", "--norestore",
              "--convert-to", "pdf", "--outdir", str(outdir), str(path)])
        made = outdir / (path.stem + ".pdf")
        if not made.is_file():
            raise RenderError(f"soffice wrote no PDF for {path.name}")
        pdf = path.with_name(path.name + ".pdf")
        shutil.move(made, pdf)
    return pdf


def pdf_text(pdf: Path) -> str:
    """The text of every page as laid out (pdftotext -layout); pages are separated by form feeds."""
    return _run(["pdftotext", "-layout", str(pdf), "-"])


def pdf_page_texts(pdf: Path) -> list[str]:
    pages = pdf_text(pdf).split("\f")
    return pages[:-1] if pages and not pages[-1].strip() else pages


def _info(pdf: Path) -> str:
    return _run(["pdfinfo", str(pdf)])


def pdf_pages(pdf: Path) -> int:
    m = re.search(r"^Pages:\s+(\d+)", _info(pdf), re.M)
    if not m:
        raise RenderError(f"pdfinfo shows no page count for {pdf.name}")
    return int(m.group(1))


def pdf_page_size(pdf: Path) -> tuple[float, float]:
    """(width, height) in points of the first page."""
    m = re.search(r"^Page size:\s+([\d.]+) x ([\d.]+) pts", _info(pdf), re.M)
    if not m:
        raise RenderError(f"pdfinfo shows no page size for {pdf.name}")
    return float(m.group(1)), float(m.group(2))


def save_pages(pdf: Path, name: str) -> list[Path]:
    """Every page as var/documents/<name>-N.png (60 dpi), for a person to look at; older pages of that name go."""
    DOCUMENTS.mkdir(parents=True, exist_ok=True)
    for old in DOCUMENTS.glob(f"{name}-*.png"):
        old.unlink()
    _run(["pdftoppm", "-png", "-r", "60", str(pdf), str(DOCUMENTS / name)])
    return sorted(DOCUMENTS.glob(f"{name}-*.png"))


def squeeze(text: str) -> str:
    """`text` without any whitespace: lines wrap differently on paper than in the source."""
    return re.sub(r"\s+", "", text)


@dataclass(frozen=True)
class Word:
    page: int  # 1-based
    x0: float
    y0: float
    x1: float
    y1: float
    text: str


_PAGE = re.compile(r'<page width="([\d.]+)" height="([\d.]+)">')
_WORD = re.compile(r'<word xMin="([\d.]+)" yMin="([\d.]+)" xMax="([\d.]+)" yMax="([\d.]+)">(.*?)</word>')


def words(pdf: Path) -> tuple[list[Word], list[tuple[float, float]]]:
    """Every word with its box in points (pdftotext -bbox), and each page's (width, height)."""
    out = _run(["pdftotext", "-bbox", str(pdf), "-"])
    found: list[Word] = []
    sizes: list[tuple[float, float]] = []
    for chunk in out.split("<page ")[1:]:
        m = _PAGE.match("<page " + chunk)
        if not m:
            raise RenderError(f"pdftotext -bbox: no page size in {pdf.name}")
        sizes.append((float(m.group(1)), float(m.group(2))))
        for w in _WORD.finditer(chunk):
            found.append(Word(len(sizes), *(float(w.group(i)) for i in range(1, 5)), html.unescape(w.group(5))))
    return found, sizes


def column_texts(pdf: Path, header: str, next_header: str | None) -> list[str]:
    """Per page, the text printed in the table column headed `header` (up to the column headed `next_header`,
    or the page's right edge), below the header: what a reader of that column reads, not mixed with the
    columns beside it. A page without the header gives ""; the column's own header repeated lower on the
    page (a second table) is left out."""
    found, sizes = words(pdf)
    texts = []
    for page, (width, height) in enumerate(sizes, 1):
        on_page = [w for w in found if w.page == page]
        heads = sorted((w for w in on_page if w.text == header), key=lambda w: w.y0)
        if not heads:
            texts.append("")
            continue
        head = heads[0]
        nexts = [w for w in on_page if next_header and w.text == next_header and abs(w.y0 - head.y0) < 2]
        x0, x1 = head.x0 - 2, (nexts[0].x0 - 2 if nexts else width)
        text = _run(["pdftotext", "-layout", "-f", str(page), "-l", str(page), "-x", str(int(x0)),
                     "-y", str(int(head.y1) + 1), "-W", str(int(x1 - x0)), "-H", str(int(height - head.y1)),
                     str(pdf), "-"])
        texts.append("\n".join(line for line in text.splitlines() if line.strip() != header))
    return texts
