"""bench/signatures.py writes lines in ClamAV's formats (docs.clamav.net: hash, extended and logical signatures),
with body lengths drawn like real ones; loading it into a real clamd is `python -m bench.signatures --measure`."""

from __future__ import annotations

import re
import statistics
from pathlib import Path

from bench import signatures

WILDCARD = r"(?:\?\?|\*|\{\d+-\d+\}|\([0-9a-f]{2}\|[0-9a-f]{2}\))"
STATIC = r"(?:[0-9a-f]{2}){4,}"
HEXSIG = re.compile(rf"^{STATIC}(?:{WILDCARD}+{STATIC})*$")
NAME = r"[A-Za-z]+\.[A-Za-z]+\.[A-Za-z]+-\d+-0"


def static_bytes(sig: str) -> int:
    return sum(len(part) // 2 for part in re.split(WILDCARD, sig))


def test_body_signatures_are_well_formed_and_sized_like_real_ones() -> None:
    lines = list(signatures.ndb_lines(3000, seed=5))
    sizes = []
    wild = 0
    for line in lines:
        name, target, offset, sig = line.rstrip("\n").split(":")
        assert re.fullmatch(NAME, name)
        assert target in {"0", "1", "2", "3", "4", "5", "6", "7", "9", "10"} and offset in {"*", "0"}
        assert HEXSIG.match(sig), sig  # never starts or ends with a wildcard; static runs of 4 bytes or more
        for lo, hi in re.findall(r"\{(\d+)-(\d+)\}", sig):
            assert 0 < int(lo) < int(hi)
        wild += sig != re.sub(WILDCARD, "", sig)
        sizes.append(static_bytes(sig))
    in_range = sum(20 <= n <= 80 for n in sizes) / len(sizes)
    assert in_range > 0.7 and 30 <= statistics.median(sizes) <= 60 and max(sizes) <= 260
    assert 0.4 < wild / len(lines) < 0.8  # both of clamd's matchers get work
    assert lines == list(signatures.ndb_lines(3000, seed=5))  # seeded: the same set every run


def test_logical_signatures_are_well_formed() -> None:
    for line in signatures.ldb_lines(500, seed=5):
        name, tdb, logic, *subs = line.rstrip("\n").split(";")
        assert re.fullmatch(NAME, name)
        assert re.fullmatch(r"Engine:51-255,Target:\d+", tdb)
        assert 2 <= len(subs) <= 4 and all(HEXSIG.match(s) for s in subs)
        assert {int(i) for i in re.findall(r"\d+", logic)} == set(range(len(subs)))


def test_write_keeps_eicar_and_scales(tmp_path: Path) -> None:
    counts = signatures.write(tmp_path, scale=0.002, seed=3)
    assert counts == {"md5": 10_400, "sha256": 3_400, "ndb": 80, "ldb": 16}
    assert (tmp_path / "intake-test.hdb").read_text().endswith(":Intake.Test.EICAR.MD5\n")
    assert (tmp_path / "intake-test.ndb").read_text().startswith("Intake.Test.EICAR.Body:0:*:")
    md5 = (tmp_path / "intake-prodlike.hdb").read_text().splitlines()
    sha = (tmp_path / "intake-prodlike.hsb").read_text().splitlines()
    assert len(md5) == 10_400 and len(sha) == 3_400
    assert all(re.fullmatch(rf"[0-9a-f]{{32}}:\d+:{NAME}", x) for x in md5)
    assert all(re.fullmatch(rf"[0-9a-f]{{64}}:\d+:{NAME}", x) for x in sha)
    assert len({x.split(":")[0] for x in md5}) == len(md5)
    assert all(2048 <= int(x.split(":")[1]) <= 8 * 1024 * 1024 for x in md5)
    assert len((tmp_path / "intake-prodlike.ndb").read_text().splitlines()) == 80
    assert len((tmp_path / "intake-prodlike.ldb").read_text().splitlines()) == 16
