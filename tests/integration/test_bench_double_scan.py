"""`python -m bench.double_scan` on a handful of messages with the test signatures: every message is scanned whole
and attachment by attachment, the figures add up, EICAR is found by both scans, and clamd and the temp dir are
gone afterwards. The 300-message runs are never made here."""

from __future__ import annotations

import importlib
import json
import sys
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from daemon.config import PACKAGE_ROOT

if str(PACKAGE_ROOT) not in sys.path:
    sys.path.insert(0, str(PACKAGE_ROOT))  # bench/ is a folder of the repository, not an installed package
corpus: Any = importlib.import_module("bench.corpus")
double_scan: Any = importlib.import_module("bench.double_scan")

# 21 is the smallest corpus whose mix holds every class, EICAR included (bench/corpus.py's plan).
MESSAGES = 21
LIMIT = 20 * 1024 * 1024  # rules/consultation.toml's max_message_bytes


@pytest.mark.parametrize("cache", ["on", "off"])
def test_double_scan_measures_every_message(tmp_path: Path, capsys: pytest.CaptureFixture[str], cache: str) -> None:
    out = tmp_path / "double.json"
    argv = ["--signatures", "test", "--messages", str(MESSAGES), "--json", str(out)]
    assert double_scan.main(argv + (["--disable-cache"] if cache == "off" else [])) == 0
    results = json.loads(out.read_text())
    text = capsys.readouterr().out

    rows, total = results["rows"], results["total"]
    assert Counter(r["kind"] for r in rows) == Counter(corpus.plan(MESSAGES))
    assert set(results["by_kind"]) == set(corpus.MIX)
    # Every message is measured, except one over the size limit, which the intake never scans (R3).
    for r in rows:
        assert r["error"] is None
        assert r["too_large"] == (r["size"] > LIMIT)
        assert r["whole_cpu_s"] >= 0 and r["attachments_cpu_s"] >= 0
        if not r["too_large"]:
            assert r["whole_wall_s"] > 0
            # Attachments as parse_message gives them: none in a text comment, one in every other class here.
            assert r["attachments"] == (0 if r["kind"] in ("text_jis", "text_utf8") else 1)
            assert (r["attachments_wall_s"] > 0) == (r["attachments"] > 0)
    assert total["messages"] == MESSAGES == total["measured"] + total["too_large"]
    assert total["errors"] == 0 and total["attachments"] == sum(r["attachments"] for r in rows)

    # The figures come from the rows and from each other.
    measured = [r for r in rows if not r["too_large"]]
    whole, att = sum(r["whole_cpu_s"] for r in measured), sum(r["attachments_cpu_s"] for r in measured)
    assert total["whole_cpu_s"] == pytest.approx(whole) and total["attachments_cpu_s"] == pytest.approx(att)
    assert total["whole_cpu_ms_per_msg"] == pytest.approx(whole / len(measured) * 1000)
    assert whole > 0  # the big message alone takes clamd more than one 10 ms tick
    assert total["share"] == pytest.approx(att / whole)
    assert total["mb_whole"] == pytest.approx(sum(r["size"] for r in measured) / 1e6)
    assert 0 < total["mb_attachments"] < total["mb_whole"]
    for kind, s in results["by_kind"].items():
        assert s["messages"] == sum(r["kind"] == kind for r in rows)
        assert s["share"] == (pytest.approx(s["attachments_cpu_s"] / s["whole_cpu_s"]) if s["whole_cpu_s"] else None)

    # EICAR is found by both scans, nothing else by either, and the two agree on every message.
    eicar = results["by_kind"]["eicar"]
    assert eicar["found_whole"] == eicar["found_attachments"] == eicar["measured"] >= 1
    assert total["found_whole"] == total["found_attachments"] == eicar["measured"]
    assert all(sig.startswith("Intake.Test.EICAR") for r in rows for sig in r["attachment_signatures"])
    assert total["disagreements"] == 0 and results["disagreements"] == []

    # The markdown table: a row per class and the total, with the share as computed.
    for kind in corpus.MIX:
        assert any(line.startswith(f"| {kind} | ") for line in text.splitlines())
    assert f"| **total** | {MESSAGES} | " in text
    assert f"**{total['share'] * 100:.1f} %**" in text
    assert f"clamd cache {cache}" in text

    # Cleaned up: clamd stopped (and reaped) and the temp dir removed.
    assert not Path(f"/proc/{results['clamd_pid']}").exists()
    assert not Path(results["workdir"]).exists()


def test_interrupt_stops_clamd_and_removes_the_temp_dir(monkeypatch: pytest.MonkeyPatch) -> None:
    """Ctrl-C in the middle of the scans: exit 130, no clamd left, no temp dir left."""
    seen: dict[str, Any] = {}
    real = double_scan.measure_message

    def interrupted(item: Any, raw: bytes, scanner: Any, clamd_pid: int, rules: Any) -> Any:
        if seen:
            raise KeyboardInterrupt
        seen["pid"], seen["corpus"] = clamd_pid, Path(item.path).parent
        return real(item, raw, scanner, clamd_pid, rules)

    monkeypatch.setattr(double_scan, "measure_message", interrupted)
    assert double_scan.main(["--messages", "3"]) == 130
    assert not Path(f"/proc/{seen['pid']}").exists()
    assert not seen["corpus"].parent.exists()
