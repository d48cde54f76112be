"""CSV injection (issue 16 item 4) against a real spreadsheet: the project's CSV files (`intake export` staff
and public, `intake log --format csv`) are opened by LibreOffice with a CSV filter that evaluates formulas,
converted to xlsx and read back with openpyxl: no cell is a formula, and the payloads stay text."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import openpyxl
import pytest

from daemon.model import Arrival
from daemon.pipeline import Intake

from mails import IN_WINDOW, mail

DDE = "-2+3+cmd|' /C calc'!A0"
PAYLOADS = [DDE, "=1+2", "+2+3", "@SUM(1)", "=HYPERLINK(\"http://example.com\",\"x\")"]
# token 13 = true: "Evaluate formulas" on import (LibreOffice's CSV filter options)
EVALUATING_FILTER = "CSV:44,34,76,1,,0,false,true,false,false,false,-1,true"


def open_in_libreoffice(csv_path: Path, tmp: Path) -> list[list[tuple[object, str]]]:
    out = tmp / "lo-out"
    subprocess.run(["soffice", f"-env:UserInstallation=file://{tmp}/lo-profile", "--headless",
                    f"--infilter={EVALUATING_FILTER}", "--convert-to", "xlsx", "--outdir", str(out), str(csv_path)],
                   check=True, capture_output=True, timeout=180)
    ws = openpyxl.load_workbook(out / (csv_path.stem + ".xlsx")).active
    return [[(c.value, c.data_type) for c in row] for row in ws.iter_rows()]


def test_the_filter_does_evaluate_formulas(tmp_path: Path) -> None:
    # the control: without the quote LibreOffice makes a formula of "=1+2", so the tests below could fail
    raw = tmp_path / "raw.csv"
    raw.write_text("a\r\n=1+2\r\n", encoding="utf-8")
    cells = open_in_libreoffice(raw, tmp_path)
    assert cells[1][0][1] == "f"


@pytest.fixture
def hostile(intake: Intake) -> None:
    for i, payload in enumerate(PAYLOADS):
        raw = mail(body=payload, sender=f"user{i}@example.jp", subject=f"s{i}")
        assert intake.process(Arrival(raw=raw, source="ingest", received_at=IN_WINDOW,
                                      received_source="argument")).status == "accepted"


@pytest.mark.parametrize("args", [("export", "--format", "csv"), ("export", "--format", "csv", "--public"),
                                  ("log", "--format", "csv")], ids=["export", "public", "log"])
def test_no_cell_of_a_csv_we_write_is_a_formula(hostile: None, env: dict[str, str], tmp_path: Path,
                                               args: tuple[str, ...]) -> None:
    done = subprocess.run([sys.executable, "-m", "daemon.cli", *args], env=env, capture_output=True, timeout=300)
    assert done.returncode == 0, done.stderr.decode()
    path = tmp_path / "out.csv"
    path.write_bytes(done.stdout)
    cells = open_in_libreoffice(path, tmp_path)
    assert len(cells) == 1 + len(PAYLOADS)
    formulas = [v for row in cells for v, kind in row if kind == "f"]
    assert formulas == []
    if args[0] == "export":
        texts = {str(v) for row in cells for v, _ in row if v is not None}
        for payload in PAYLOADS:
            assert any(t.endswith(payload) for t in texts), payload
        assert "'" + DDE in texts  # written as text, exactly as OWASP advises
