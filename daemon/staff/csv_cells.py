"""Every CSV the project writes goes through here: no cell may be read as a formula (CSV injection).

OWASP's advice (https://owasp.org/www-community/attacks/CSV_Injection): a text cell that begins with
``=``, ``+``, ``-``, ``@``, a tab or a carriage return is prefixed with a single quote, so that Excel and
LibreOffice show it as text instead of evaluating it (``-2+3+cmd|' /C calc'!A0``, ``@SUM(1)``). Leading
spaces are looked through, since a spreadsheet may trim them on import. Numbers (Python ints) stay numbers.
"""

from __future__ import annotations

import csv
from collections.abc import Iterable, Sequence
from typing import IO, Any

FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r", "＝", "＋", "－", "＠")


def safe_cell(value: Any) -> Any:
    """The value as a spreadsheet must see it: a string that could start a formula gets a leading quote."""
    if isinstance(value, str) and value.lstrip(" \u3000\n")[:1] in FORMULA_STARTS:
        return "'" + value
    if isinstance(value, str) and value[:1] in ("\t", "\r"):
        return "'" + value
    return value


class SafeWriter:
    """csv.writer whose every row goes through `safe_cell`."""

    def __init__(self, out: IO[str], lineterminator: str = "\r\n") -> None:
        self._w = csv.writer(out, lineterminator=lineterminator)

    def writerow(self, row: Sequence[Any]) -> None:
        self._w.writerow([safe_cell(v) for v in row])

    def writerows(self, rows: Iterable[Sequence[Any]]) -> None:
        for row in rows:
            self.writerow(row)
