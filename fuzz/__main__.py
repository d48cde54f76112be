"""Run one fuzz target for a while: `python -m fuzz TARGET [--seconds N] [--engine atheris|mutate]`.

atheris (libFuzzer, coverage-guided over daemon/) when it is installed, else a plain mutation loop over the
seeds. Seeds: ../shared/corpus/real, samples/, the hostile shapes and fuzz/crashes (fuzz/targets.py). A crash
is written to fuzz/findings/<target>-<hash> (gitignored) for triage; once fixed it moves to fuzz/crashes/,
whose files tests/unit/test_fuzz_regressions.py replays. The last line on stdout is one JSON summary:
{"target", "engine", "seconds", "executions", "coverage", "crashes"}.

    python -m fuzz --list
    python -m fuzz parse --seconds 3600      # the long run (README, "Fuzzing")
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import random
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from fuzz.targets import ROOT, TARGETS, seeds

FINDINGS = ROOT / "fuzz" / "findings"


def _atheris_child(target: str, seconds: int, corpus: Path, unit_timeout: int = 30) -> None:
    """In the child process: instrument daemon/, then hand control to libFuzzer (which exits the process)."""
    import atheris

    with atheris.instrument_imports(include=["daemon"]):
        import daemon.extract
        import daemon.extract.doc
        import daemon.extract.docx
        import daemon.extract.ichitaro
        import daemon.extract.sheet
        import daemon.extract.text
        import daemon.stages.classify
        import daemon.stages.headers
        import daemon.stages.identity
        import daemon.stages.parse
        import daemon.stages.structure
        import daemon.stages.texts  # noqa: F401
    fn = TARGETS[target]
    FINDINGS.mkdir(exist_ok=True)
    atheris.Setup([sys.argv[0], str(corpus), f"-max_total_time={seconds}", "-rss_limit_mb=2048",
                   f"-timeout={unit_timeout}", "-max_len=1048576", f"-artifact_prefix={FINDINGS}/{target}-",
                   "-print_final_stats=1"],
                  fn)
    atheris.Fuzz()


def run_atheris(target: str, seconds: int, unit_timeout: int = 30) -> dict[str, object]:
    with tempfile.TemporaryDirectory(prefix=f"fuzz-{target}-") as tmp:
        corpus = Path(tmp)
        for seed in seeds(target):
            (corpus / hashlib.sha1(seed).hexdigest()).write_bytes(seed)
        before = set(FINDINGS.glob(f"{target}-*")) if FINDINGS.exists() else set()
        env = {**os.environ, "PYTHONPATH": str(ROOT)}
        done = subprocess.run([sys.executable, "-m", "fuzz", target, "--seconds", str(seconds), "--child",
                               str(corpus), "--unit-timeout", str(unit_timeout)], cwd=ROOT, env=env,
                              capture_output=True, text=True, timeout=seconds + unit_timeout + 300)
        log = done.stdout + done.stderr
        after = set(FINDINGS.glob(f"{target}-*")) if FINDINGS.exists() else set()
        runs = re.findall(r"stat::number_of_executed_units:\s*(\d+)", log) or re.findall(r"Done (\d+) runs", log)
        cov = re.findall(r"\bcov: (\d+)", log)
        found = sorted(after - before)
        # An out-of-memory inside a third-party parser of an extractor target is bounded in the product by the
        # extraction child's address-space limit: reported, not counted as a crash of ours.
        ooms = [str(p.relative_to(ROOT)) for p in found if "-oom-" in p.name and target not in ("parse", "classify")]
        crashed = [str(p.relative_to(ROOT)) for p in found if str(p.relative_to(ROOT)) not in ooms]
        if done.returncode != 0 and not found:
            tail = "\n".join(log.splitlines()[-15:])
            crashed = [f"(exit {done.returncode}, nothing saved)\n{tail}"]
        return {"target": target, "engine": "atheris", "seconds": seconds,
                "executions": int(runs[-1]) if runs else 0, "coverage": int(cov[-1]) if cov else None,
                "crashes": crashed, "ooms": ooms}


def _mutate(rng: random.Random, data: bytes, pool: list[bytes]) -> bytes:
    buf = bytearray(data)
    for _ in range(rng.randint(1, 8)):
        op = rng.randrange(5)
        pos = rng.randrange(len(buf) + 1)
        if op == 0 and buf:
            buf[min(pos, len(buf) - 1)] = rng.randrange(256)
        elif op == 1:
            buf[pos:pos] = bytes(rng.randrange(256) for _ in range(rng.randint(1, 16)))
        elif op == 2 and buf:
            del buf[pos : pos + rng.randint(1, 64)]
        elif op == 3:
            other = rng.choice(pool)
            start = rng.randrange(len(other) + 1)
            buf[pos:pos] = other[start : start + rng.randint(1, 256)]
        else:
            buf[pos:pos] = rng.choice([b"\r", b"\n", b"\r\n", b"--", b"=?utf-8?B?", b"<a ", b"\x00", b"\xff\xfe"])
    return bytes(buf)


def run_mutate(target: str, seconds: int) -> dict[str, object]:
    """No atheris: random mutations of the seeds, each input run in this process."""
    fn = TARGETS[target]
    pool = seeds(target)
    rng = random.Random(int(os.environ.get("INTAKE_FUZZ_SEED", "0")) or None)
    end = time.monotonic() + seconds
    runs, crashed = 0, []
    while time.monotonic() < end:
        data = _mutate(rng, rng.choice(pool), pool)
        runs += 1
        try:
            fn(data)
        except Exception as exc:
            FINDINGS.mkdir(exist_ok=True)
            path = FINDINGS / f"{target}-{hashlib.sha1(data).hexdigest()}"
            path.write_bytes(data)
            crashed.append(f"{path.relative_to(ROOT)} ({exc.__class__.__name__})")
            break
    return {"target": target, "engine": "mutate", "seconds": seconds, "executions": runs, "coverage": None,
            "crashes": crashed}


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m fuzz", description=__doc__.split("\n\n")[0])
    parser.add_argument("target", nargs="?", choices=sorted(TARGETS))
    parser.add_argument("--seconds", type=int, default=60)
    parser.add_argument("--engine", choices=["atheris", "mutate"], default=None)
    parser.add_argument("--list", action="store_true")
    # libFuzzer stops at the first input slower than this: on a machine shared with other work (a niced long
    # run) a unit that takes 0.3 s alone can take longer than 30 s of wall clock, and end the run for nothing.
    parser.add_argument("--unit-timeout", type=int, default=30, help="seconds one input may take (default 30)")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.list or not args.target:
        print("\n".join(sorted(TARGETS)))
        return
    if args.child:
        _atheris_child(args.target, args.seconds, Path(args.child), args.unit_timeout)
        return
    engine = args.engine
    if engine is None:
        try:
            import atheris  # noqa: F401

            engine = "atheris"
        except ImportError:
            engine = "mutate"
    summary = run_atheris(args.target, args.seconds, args.unit_timeout) if engine == "atheris" \
        else run_mutate(args.target, args.seconds)
    print(json.dumps(summary, ensure_ascii=False))
    sys.exit(1 if summary["crashes"] else 0)


if __name__ == "__main__":
    main()
