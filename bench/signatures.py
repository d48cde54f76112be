"""A production-like ClamAV signature set, generated at run time (the benchmark's `--signatures production-like`).

freshclam's main.cvd + daily.cvd hold millions of file-hash signatures and tens of thousands of body
(`.ndb`) and logical (`.ldb`) signatures; clamd needs about 1 GB for them. The tests' set (devkit/clamd.py:
two EICAR lines) makes clamd nearly free, so this builds a set of the same shape and size from a seed:

- `.hdb` (MD5) and `.hsb` (SHA-256) lines `hash:size:name`, sizes log-uniform 2 KB–8 MB like malware files.
  They cost memory and load time; per scanned byte almost nothing (one digest per file, a table lookup).
- `.ndb` lines `name:target:offset:hexsig` (docs.clamav.net "Extended signature format"): lengths drawn
  mostly 20–80 bytes (a long tail to 250), about 40 % static (ClamAV's Boyer-Moore matcher), the rest with
  wildcards `??`, `{n-m}`, `*`, `(aa|bb)` (its Aho-Corasick matcher). Those aimed at text (HTML, mail, ASCII,
  PDF, and most of target 0) are built from printable bytes and the tokens of script, HTML, macro and PDF
  malware, so that their prefixes occur in ordinary mail as real ones do; the rest are binary. Targets are
  mixed as an estimate of the official set's (half of it PE); offsets are mostly `*`, some anchored at 0.
- `.ldb` lines `name;Engine:51-255,Target:t;logic;subsig0;subsig1…` (docs.clamav.net "Logical signatures"):
  2–4 subsignatures combined with `&` and `|`.

Every pattern carries a run of seeded random bytes, so nothing in the corpus matches by chance; the EICAR test
signatures (devkit/clamd.py) are kept, so the benchmark's EICAR messages are still found.

`python -m bench.signatures DIR [--scale S] [--measure]` writes the set and, with --measure, loads it into a
real clamd and reports its load time, RSS, INSTREAM MB/s on a few MB of text and docx mail, EICAR found and
a clean docx OK (BENCHMARKS.md, "Production-like signatures").
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path

from devkit.clamd import write_signatures

# At scale 1.0 (calibrated on ClamAV 1.4.6 to about 1 GB of clamd RSS; BENCHMARKS.md).
BASE_MD5 = 5_200_000
BASE_SHA256 = 1_700_000
BASE_NDB = 40_000
BASE_LDB = 8_000
PREFIX = "intake-prodlike"
TOKEN_START = 0.15  # the share of text signatures that begin with a bare token (e.g. `eval(`, `<script`)

_PLATFORMS = ["Win", "Doc", "Xls", "Html", "Js", "Pdf", "Email", "Unix", "Andr", "Php", "Vbs", "Txt"]
_CATEGORIES = ["Trojan", "Malware", "Downloader", "Exploit", "Phishing", "Dropper", "Worm", "Packed", "Coinminer"]
_FAMILIES = ["Agent", "Emotet", "Qakbot", "Generic", "Valyria", "Dridex", "Heuristic", "Obfus", "Kryptik",
             "Formbook", "Nemucod", "Pdfka", "Iframe", "Redirector", "AgentTesla", "Lokibot", "Ursnif"]
# Fragments of script, HTML, macro, mail and PDF malware: the bytes real text-target signatures start with.
_TOKENS = [b"eval(", b"unescape(", b"document.write(", b"String.fromCharCode(", b"<script", b"<iframe src=",
           b"window.location", b"ActiveXObject(", b"WScript.Shell", b"CreateObject(", b"Shell(", b"AutoOpen",
           b"Document_Open", b"powershell -", b"-EncodedCommand ", b"cmd.exe /c ", b"http://", b"https://",
           b"/JavaScript", b"/OpenAction", b"/Launch", b"base64_decode(", b"gzinflate(", b"$_POST[", b"Chr(",
           b"var ", b"function(", b"return ", b"Content-Type: ", b"filename=\"", b"<html", b"<a href=\"",
           b"<form action=", b"password", b"account", b"verify", b".exe", b".scr", b"MZ", b"PK\x03\x04",
           b"%PDF-", b"obj", b"stream", b"Attribute VB_Name", b"Sub ", b"End Sub", b"XMLHTTP", b"Open \"GET\""]
# Target types (docs: 0 any, 1 PE, 2 OLE2, 3 HTML, 4 mail, 5 graphics, 6 ELF, 7 ASCII text, 9 Mach-O, 10 PDF)
# and their share among body and logical signatures: an estimate of the official set's mix (most of it is
# Windows executables). Only 0, 3, 4 and 7 apply to text mail and docx; the rest cost load time and memory.
_TARGETS = [(0, 0.20), (1, 0.50), (2, 0.05), (3, 0.08), (4, 0.02), (5, 0.01), (6, 0.03), (7, 0.04), (9, 0.02),
            (10, 0.05)]


@dataclass(frozen=True)
class Plan:
    md5: int
    sha256: int
    ndb: int
    ldb: int

    @classmethod
    def scaled(cls, scale: float) -> Plan:
        return cls(int(BASE_MD5 * scale), int(BASE_SHA256 * scale), max(1, int(BASE_NDB * scale)),
                   max(1, int(BASE_LDB * scale)))


def _name(rng: random.Random, n: int) -> str:
    return f"{rng.choice(_PLATFORMS)}.{rng.choice(_CATEGORIES)}.{rng.choice(_FAMILIES)}-{1_000_000 + n}-0"


def _size(rng: random.Random) -> int:
    return int(2048 * (4096 ** rng.random()))  # log-uniform 2 KB … 8 MB


def _length(rng: random.Random) -> int:
    """Static bytes of one body signature: mostly 20–80 (lognormal around 40), a tail to 250."""
    return max(12, min(250, int(rng.lognormvariate(3.7, 0.45))))


def _static(rng: random.Random, n: int, text: bool) -> bytes:
    """n bytes that begin like real signatures do (text tokens or binary) and carry a seeded random run of at
    least 8 bytes, so that no ordinary file holds them by chance."""
    out = bytearray()
    if text:
        # Most start with three printable bytes of their own and only some with a bare token: real signatures'
        # first bytes are varied, and clamd checks every pattern that shares the prefix that was hit.
        if rng.random() >= TOKEN_START:
            out += bytes(rng.randint(0x21, 0x7E) for _ in range(3))
        while len(out) < n - 8:
            out += rng.choice(_TOKENS)
            if rng.random() < 0.5:
                out += bytes(rng.choice(b"abcdefghijklmnopqrstuvwxyz0123456789_") for _ in range(rng.randint(2, 6)))
        tail = bytes(rng.choice(b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/=%")
                     for _ in range(max(8, n - len(out))))
    else:
        tail = rng.randbytes(max(8, n - len(out)))
    return bytes(out + tail)


def _hexsig(rng: random.Random, text: bool, wildcards: bool) -> str:
    """One pattern in ClamAV's hex form: static segments of at least 4 bytes, joined by wildcards when asked;
    never starting or ending with one."""
    data = _static(rng, _length(rng), text)
    if not wildcards or len(data) < 16:
        return data.hex()
    cuts = sorted(rng.sample(range(4, len(data) - 4), k=min(rng.randint(1, 3), (len(data) - 8) // 4)))
    parts: list[str] = []
    last = 0
    for cut in cuts:
        if cut - last < 4:
            continue
        parts.append(data[last:cut].hex())
        last = cut
        kind = rng.random()
        if kind < 0.45:
            parts.append("??" * rng.randint(1, 3))
        elif kind < 0.75:
            lo = rng.randint(1, 8)
            parts.append(f"{{{lo}-{lo + rng.randint(1, 24)}}}")
        elif kind < 0.9:
            parts.append("*")
        else:
            a, b = rng.randbytes(1).hex(), rng.randbytes(1).hex()
            parts.append(f"({a}|{b})" if a != b else "??")
    parts.append(data[last:].hex())
    return "".join(parts)


def _target(rng: random.Random) -> int:
    pick, acc = rng.random(), 0.0
    for target, share in _TARGETS:
        acc += share
        if pick < acc:
            return target
    return 0


def ndb_lines(count: int, seed: int) -> Iterator[str]:
    rng = random.Random(f"ndb:{seed}")
    for n in range(count):
        target = _target(rng)
        text = target in (3, 4, 7, 10) or (target == 0 and rng.random() < 0.6)
        offset = "0" if rng.random() < 0.08 else "*"
        sig = _hexsig(rng, text, wildcards=rng.random() < 0.65 and offset == "*")
        yield f"{_name(rng, n)}:{target}:{offset}:{sig}\n"


def ldb_lines(count: int, seed: int) -> Iterator[str]:
    rng = random.Random(f"ldb:{seed}")
    for n in range(count):
        target = _target(rng)
        text = target in (3, 4, 7, 10) or (target == 0 and rng.random() < 0.6)
        subs = [_hexsig(rng, text, wildcards=rng.random() < 0.4) for _ in range(rng.randint(2, 4))]
        logic = {2: "0&1", 3: rng.choice(["0&1&2", "(0|1)&2"]), 4: rng.choice(["0&1&2&3", "(0&1)|(2&3)"])}[len(subs)]
        yield f"{_name(rng, n)};Engine:51-255,Target:{target};{logic};{';'.join(subs)}\n"


def _hash_file(path: Path, count: int, digest_bytes: int, seed: str) -> None:
    rng = random.Random(seed)
    with path.open("w") as fh:
        done = 0
        while done < count:
            batch = min(100_000, count - done)
            blob = rng.randbytes(batch * digest_bytes).hex()
            width = digest_bytes * 2
            fh.write("".join(f"{blob[k * width:(k + 1) * width]}:{_size(rng)}:{_name(rng, done + k)}\n"
                             for k in range(batch)))
            done += batch


def write(db_dir: Path, scale: float = 1.0, seed: int = 20) -> dict[str, int]:
    """Write the set (and the EICAR test signatures) into db_dir; the counts of each kind."""
    db_dir.mkdir(parents=True, exist_ok=True)
    write_signatures(db_dir)
    plan = Plan.scaled(scale)
    _hash_file(db_dir / f"{PREFIX}.hdb", plan.md5, 16, f"md5:{seed}")
    _hash_file(db_dir / f"{PREFIX}.hsb", plan.sha256, 32, f"sha256:{seed}")
    with (db_dir / f"{PREFIX}.ndb").open("w") as fh:
        fh.writelines(ndb_lines(plan.ndb, seed))
    with (db_dir / f"{PREFIX}.ldb").open("w") as fh:
        fh.writelines(ldb_lines(plan.ldb, seed))
    return asdict(plan)


# -- measuring (small: a few MB) -------------------------------------------------------------------------------
def sample_mail(megabytes: float = 4.0, seed: int = 9) -> list[bytes]:
    """Text comments and docx/xlsx mail from the benchmark's corpus, about `megabytes` in all."""
    from bench import corpus

    kinds = [corpus.TEXT_JIS, corpus.TEXT_UTF8, corpus.WORD, corpus.EXCEL]
    out: list[bytes] = []
    i = 0
    while sum(map(len, out)) < megabytes * 1e6:
        raw, _ = corpus.build(i, kinds[i % len(kinds)], "sig", seed)
        out.append(raw)
        i += 1
    return out


def rss_kb(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def measure(db_dir: Path | None, workdir: Path, megabytes: float = 4.0,
            rounds: int = 2) -> dict[str, float | int | str]:
    """Start a clamd on db_dir (None: the test set), and report load time, RSS, INSTREAM MB/s, and that EICAR is
    found and a clean docx is not."""
    import io
    import os
    import zipfile

    from bench.corpus import make_docx
    from bench.procmon import cpu_seconds
    from bench.runner import BenchClamd
    from daemon.scanner import Scanner
    from devkit.clamd import eicar

    clamd = BenchClamd(workdir / "clamd", database_dir=db_dir)  # its clean cache off: each round scans again
    t0 = time.monotonic()
    clamd.start(timeout=900)
    load_s = time.monotonic() - t0
    try:
        assert clamd.proc is not None
        scanner = Scanner(clamd.url, timeout=300)
        found = scanner.scan(eicar())
        docx = make_docx("意見書\n本案に賛成します。\n", 200_000, random.Random(1))
        zipfile.ZipFile(io.BytesIO(docx)).testzip()
        clean = scanner.scan(docx)
        mail = sample_mail(megabytes)
        total = sum(map(len, mail))
        cpu0 = cpu_seconds(clamd.proc.pid)
        t1 = time.monotonic()
        for _ in range(rounds):
            for raw in mail:
                if scanner.scan(raw).infected:
                    raise RuntimeError("a clean corpus message was found infected")
        wall = time.monotonic() - t1
        cpu = cpu_seconds(clamd.proc.pid) - cpu0
        return {"load_s": round(load_s, 1), "rss_mb": round(rss_kb(clamd.proc.pid) / 1024),
                "messages": len(mail) * rounds, "mb": round(total * rounds / 1e6, 1),
                "mb_per_s": round(total * rounds / 1e6 / wall, 1), "clamd_cpu_s": round(cpu, 2),
                "clamd_cpu_mb_per_s": round(total * rounds / 1e6 / cpu, 1) if cpu else 0.0,
                "eicar": found.signature or "NOT FOUND", "clean_docx": "FOUND" if clean.infected else "OK",
                "db_mb": round(sum(f.stat().st_size for f in (db_dir or clamd.db_dir).iterdir()) / 1e6),
                "cores": os.cpu_count() or 0}
    finally:
        clamd.stop()


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.signatures", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("dir", nargs="?", help="database directory to write (default: a temp dir, removed)")
    p.add_argument("--scale", type=float, default=1.0, help="1.0: about 1 GB of clamd RSS (default 1.0)")
    p.add_argument("--seed", type=int, default=20)
    p.add_argument("--measure", action="store_true", help="load it into a clamd and measure (a few MB scanned)")
    p.add_argument("--test-set", action="store_true", help="with --measure: also measure the tests' set")
    p.add_argument("--megabytes", type=float, default=4.0, help="mail scanned by --measure (default 4)")
    p.add_argument("--existing", metavar="DIR", help="measure a database directory as it is instead (e.g. "
                   "freshclam's /var/lib/clamav, to hold the generated set against the real one); it is linked "
                   "into a temp dir beside the EICAR test signatures, never written")
    args = p.parse_args(argv)
    if args.existing:
        with tempfile.TemporaryDirectory(prefix="intake-sigs-") as tmp:
            db = Path(tmp) / "db"
            db.mkdir()
            for f in Path(args.existing).iterdir():
                if f.is_file() and not f.name.startswith("intake-test."):
                    (db / f.name).symlink_to(f.resolve())
            write_signatures(db)
            print(json.dumps({"existing": args.existing, **measure(db, Path(tmp), args.megabytes)}, indent=1))
        return 0
    with tempfile.TemporaryDirectory(prefix="intake-sigs-") as tmp:
        db = Path(args.dir) if args.dir else Path(tmp) / "db"
        t0 = time.monotonic()
        counts = write(db, args.scale, args.seed)
        out: dict[str, object] = {"scale": args.scale, "counts": counts, "generate_s": round(time.monotonic() - t0, 1)}
        if args.measure:
            if args.test_set:
                out["test"] = measure(None, Path(tmp) / "test", args.megabytes)
            out["production_like"] = measure(db, Path(tmp) / "prod", args.megabytes)
        print(json.dumps(out, ensure_ascii=False, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
