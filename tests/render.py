"""Documents as a reader sees them: LibreOffice prints them to PDF, poppler reads the PDF back.

`to_pdf` converts a .docx/.xlsx with `soffice --headless` in a private profile (parallel runs would otherwise
fight over one profile and fail at random); `pdf_text` and `pdf_page_texts` give the text as laid out on the
page; `pdf_pages` and `pdf_page_size` what pdfinfo says; `save_pages` renders PNGs into var/documents/ (ignored
by git) so that a person can look at what the test looked at.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import tempfile
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
