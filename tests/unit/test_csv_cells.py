"""CSV injection (issue 16 item 4): a cell that could start a formula is written as text, following OWASP."""

from __future__ import annotations

import csv
import io

import pytest

from daemon.staff.csv_cells import SafeWriter, safe_cell


@pytest.mark.parametrize(
    "value",
    ["=1+2", "+2+3", "-2+3+cmd|' /C calc'!A0", "-1 本編 P.9", "@SUM(1)", "\t=1", "\r=1", "  =1+2", "＝1+2"],
)
def test_a_formula_start_is_quoted(value: str) -> None:
    assert safe_cell(value) == "'" + value


@pytest.mark.parametrize("value", ["本編 P.3", "1-2", "", "a=b", 12, -3, None])
def test_other_values_are_left_as_they_are(value: object) -> None:
    assert safe_cell(value) == value


def test_the_writer_quotes_every_cell_of_every_row() -> None:
    out = io.StringIO()
    w = SafeWriter(out)
    w.writerows([["=1", "ok", 5], ["-x", "@y", "z"]])
    assert list(csv.reader(io.StringIO(out.getvalue()))) == [["'=1", "ok", "5"], ["'-x", "'@y", "z"]]
