"""`python -m bench.double_scan`: what the intake's second scan costs clamd (issue 20, "the double scan, measured").

R5 has the intake scan the whole raw message, then each attachment on its own so that a verdict names its file
(daemon/stages/scan.py). This builds the benchmark's corpus (bench/corpus.py), starts one dev-kit clamd with the
test or the production-like signatures (bench/signatures.py) and the project's limits (deploy/clamd-limits.conf),
and walks every message, one at a time, through the intake's own first stages: read_headers and check_size (a
message over the size limit is never scanned by the intake, so it is counted apart), the whole-message INSTREAM,
parse_message, then one INSTREAM per attachment. Around each scan it reads clamd's CPU time (utime + stime of
the whole process, /proc/<pid>/stat: every scanning thread) and the wall time.

The figures: per corpus class and in total, clamd CPU ms per message of each scan and the second scan's share
(attachments CPU / whole-message CPU; the issue asks for a design change above about 20 % with production-like
signatures), and whether both scans agree on every message (clean vs found).

clamd runs with its default clean-file cache, as production's clamd.conf does: files clamd found clean while it
unpacked the whole message (the attachments among them) are remembered by hash, so the second scan of a clean
attachment can be answered from that cache. --disable-cache (`DisableCache yes`, as `python -m bench` runs clamd)
measures the second scan without it: the case of several clamd used round-robin, where the attachment usually
goes to a clamd that never saw the message.

/proc counts CPU in clock ticks (10 ms): one small scan reads 0 or 10 ms, so only sums over many messages mean
anything; the per-message figures are such sums divided by the count.
"""

from __future__ import annotations

import argparse
import json
import shutil
import signal
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from types import FrameType
from typing import Any

from bench import corpus, report
from bench import signatures as signature_set
from bench.procmon import cpu_seconds, load_average
from bench.runner import BenchClamd
from daemon.config import DEFAULT_RULES
from daemon.model import Arrival, Work
from daemon.rules import Rules, load_rules
from daemon.scanner import Scanner, ScanResult, ScanUnavailable
from daemon.stages.headers import read_headers
from daemon.stages.parse import parse_message
from daemon.stages.size import check_size
from daemon.stages.structure import StructureLimits
from devkit.clamd import Clamd

THRESHOLD = 0.20  # issue 20: a second scan costing more than this share of the first asks for a design change
MB = 1e6


@dataclass
class Scanned:
    """One message: what each scan cost clamd and what it found."""

    index: int
    kind: str
    size: int
    too_large: bool = False  # refused by the size rule before any scan (R3): the intake never scans it
    error: str | None = None  # a ScanUnavailable code: the message is left out of the figures
    whole_cpu_s: float = 0.0
    whole_wall_s: float = 0.0
    whole_signature: str | None = None
    attachments: int = 0
    attachment_bytes: int = 0
    attachments_cpu_s: float = 0.0
    attachments_wall_s: float = 0.0
    attachment_signatures: list[str] = field(default_factory=list)

    @property
    def measured(self) -> bool:
        return not self.too_large and self.error is None

    @property
    def disagrees(self) -> bool:
        """One scan found something and the other did not."""
        return self.measured and (self.whole_signature is not None) != bool(self.attachment_signatures)


def _timed_scan(scanner: Scanner, pid: int, data: bytes) -> tuple[ScanResult, float, float]:
    cpu0, t0 = cpu_seconds(pid), time.perf_counter()
    result = scanner.scan(data)
    return result, cpu_seconds(pid) - cpu0, time.perf_counter() - t0


def measure_message(item: corpus.Item, raw: bytes, scanner: Scanner, clamd_pid: int, rules: Rules) -> Scanned:
    """Both scans of one message, the attachments taken exactly as the intake takes them."""
    row = Scanned(item.index, item.kind, len(raw))
    work = Work(arrival=Arrival(raw=raw, source="bench"), sha256=None, content_id=None, size=len(raw))
    read_headers(work)
    check_size(work, rules)
    if work.done:
        row.too_large = True
        return row
    try:
        result, row.whole_cpu_s, row.whole_wall_s = _timed_scan(scanner, clamd_pid, raw)
        row.whole_signature = result.signature if result.infected else None
        parse_message(work, StructureLimits.of(rules.limits))
        for part in [] if work.done else work.attachments:  # a message parse refuses has no attachments to scan
            result, cpu, wall = _timed_scan(scanner, clamd_pid, part.data)
            row.attachments += 1
            row.attachment_bytes += len(part.data)
            row.attachments_cpu_s += cpu
            row.attachments_wall_s += wall
            if result.infected and result.signature:
                row.attachment_signatures.append(result.signature)
    except ScanUnavailable as exc:
        row.error = str(exc)
    return row


def _ratio(part: float, whole: float) -> float | None:
    return part / whole if whole > 0 else None


def summarize(rows: list[Scanned]) -> dict[str, Any]:
    """The figures of a group of messages (a class, or all). CPU and wall per message are over the messages
    measured (scanned without error)."""
    done = [r for r in rows if r.measured]
    n = len(done)
    whole_cpu = sum(r.whole_cpu_s for r in done)
    att_cpu = sum(r.attachments_cpu_s for r in done)
    whole_wall = sum(r.whole_wall_s for r in done)
    att_wall = sum(r.attachments_wall_s for r in done)
    return {
        "messages": len(rows), "measured": n, "too_large": sum(r.too_large for r in rows),
        "errors": sum(r.error is not None for r in rows), "attachments": sum(r.attachments for r in done),
        "mb_whole": sum(r.size for r in done) / MB, "mb_attachments": sum(r.attachment_bytes for r in done) / MB,
        "whole_cpu_s": whole_cpu, "attachments_cpu_s": att_cpu,
        "whole_cpu_ms_per_msg": whole_cpu / n * 1000 if n else None,
        "attachments_cpu_ms_per_msg": att_cpu / n * 1000 if n else None,
        "share": _ratio(att_cpu, whole_cpu),
        "whole_wall_s": whole_wall, "attachments_wall_s": att_wall,
        "whole_wall_ms_per_msg": whole_wall / n * 1000 if n else None,
        "attachments_wall_ms_per_msg": att_wall / n * 1000 if n else None,
        "wall_share": _ratio(att_wall, whole_wall),
        "found_whole": sum(r.whole_signature is not None for r in done),
        "found_attachments": sum(bool(r.attachment_signatures) for r in done),
        "disagreements": sum(r.disagrees for r in done),
    }


def _pct(v: float | None) -> str:
    return "–" if v is None else f"{v * 100:.1f} %"


def render(results: dict[str, Any]) -> str:
    """The markdown report (bench/report.py's table style)."""
    f = report._f
    sig, total = results["signatures"], results["total"]
    lines = [
        f"## The double scan, measured ({sig['set']} signatures, clamd cache "
        f"{'off' if results['args']['disable_cache'] else 'on'})", "",
        f"- Command: `{results['command']}`; load before {' / '.join(map(str, results['load_before']))}, "
        f"after {' / '.join(map(str, results['load_after']))}; took {f(results['elapsed_s'], 0)} s.",
        f"- clamd: {results['clamd_version']}; loaded in {f(sig['load_s'], 1)} s, RSS {sig['rss_mb']} MB"
        + (f"; {json.dumps(sig['counts'])} (generated in {f(sig['generate_s'], 1)} s)" if sig.get("counts") else "")
        + ".",
        "- One message at a time: the whole message (INSTREAM), then each attachment parse_message gives (one "
        "INSTREAM each). CPU: clamd's utime + stime around each scan (10 ms ticks, summed over the class).",
        "",
        "| class | messages | measured (too large) | attachments | MB whole / attachments | "
        "clamd CPU ms/msg whole | clamd CPU ms/msg attachments | second scan share | "
        "wall ms/msg whole / attachments | found whole / attachments | disagreements |",
        "|---|---:|---:|---:|---|---:|---:|---:|---|---|---:|",
    ]
    for kind, s in [*results["by_kind"].items(), ("**total**", total)]:
        lines.append(
            f"| {kind} | {s['messages']} | {s['measured']} ({s['too_large']}) | {s['attachments']} | "
            f"{f(s['mb_whole'], 1)} / {f(s['mb_attachments'], 1)} | {f(s['whole_cpu_ms_per_msg'], 1)} | "
            f"{f(s['attachments_cpu_ms_per_msg'], 1)} | {_pct(s['share'])} | "
            f"{f(s['whole_wall_ms_per_msg'], 1)} / {f(s['attachments_wall_ms_per_msg'], 1)} | "
            f"{s['found_whole']} / {s['found_attachments']} | {s['disagreements']} |")
    share = total["share"]
    verdict = ("not measurable (no whole-message CPU)" if share is None else
               f"{'above' if share > THRESHOLD else 'within'} the issue's {THRESHOLD * 100:.0f} %")
    lines += ["", f"Second scan's share of clamd CPU in total: **{_pct(share)}** ({verdict}); of wall time "
              f"{_pct(total['wall_share'])}."]
    if results["disagreements"]:
        lines += ["", "Messages where the two scans disagree:", ""]
        lines += [f"- #{d['index']} ({d['kind']}): whole {d['whole_signature'] or 'clean'}, attachments "
                  f"{', '.join(d['attachment_signatures']) or 'clean'}" for d in results["disagreements"]]
    else:
        lines += ["", "Verdicts: both scans agree on every message measured."]
    if total["errors"]:
        lines += ["", f"**{total['errors']} message(s) not measured: clamd gave no verdict** (see the JSON)."]
    return "\n".join(lines) + "\n"


def run(args: argparse.Namespace, root: Path, command: str) -> dict[str, Any]:
    started = time.monotonic()
    load_before = load_average()
    print(f"double_scan: building {args.messages} messages in {root}", file=sys.stderr, flush=True)
    items = corpus.write(root / "corpus", args.messages, "ds", args.seed)
    sig: dict[str, Any] = {"set": args.signatures}
    db_dir = None
    if args.signatures == "production-like":
        t0 = time.monotonic()
        db_dir = root / "signatures"
        sig["counts"] = signature_set.write(db_dir, args.signature_scale)
        sig["scale"], sig["generate_s"] = args.signature_scale, time.monotonic() - t0
    # The dev kit's clamd (clamd's defaults, cache on, as production), or the bench's with DisableCache yes.
    clamd_cls = BenchClamd if args.disable_cache else Clamd
    clamd = clamd_cls(root / "clamd", database_dir=db_dir)
    print(f"double_scan: starting clamd with the {args.signatures} signatures", file=sys.stderr, flush=True)
    t0 = time.monotonic()
    try:
        clamd.start(timeout=1800)  # millions of signatures load in minutes on a busy machine
        sig["load_s"] = time.monotonic() - t0
        assert clamd.proc is not None
        pid = clamd.proc.pid
        sig["rss_mb"] = round(signature_set.rss_kb(pid) / 1024)
        scanner = Scanner(clamd.url, timeout=300)
        rules = load_rules(DEFAULT_RULES)
        rows: list[Scanned] = []
        for item, raw in corpus.iter_raw(items):
            rows.append(measure_message(item, raw, scanner, pid, rules))
            if len(rows) % 50 == 0:
                print(f"double_scan: {len(rows)}/{len(items)}", file=sys.stderr, flush=True)
        version = scanner.version() or "?"
    finally:
        clamd.stop()
    kinds = [k for k in corpus.MIX if any(r.kind == k for r in rows)]
    return {
        "command": command, "args": vars(args), "machine": report.machine(), "clamd_version": version,
        "clamd_pid": pid, "workdir": str(root), "signatures": sig, "load_before": load_before,
        "load_after": load_average(), "elapsed_s": time.monotonic() - started,
        "by_kind": {k: summarize([r for r in rows if r.kind == k]) for k in kinds}, "total": summarize(rows),
        "disagreements": [asdict(r) for r in rows if r.disagrees],
        "errors": [asdict(r) for r in rows if r.error is not None],
        "rows": [asdict(r) for r in rows],
    }


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m bench.double_scan", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--signatures", choices=["test", "production-like"], default="test",
                   help="clamd's signatures: the tests' EICAR set (default) or bench/signatures.py's generated set")
    p.add_argument("--signature-scale", type=float, default=1.0,
                   help="size of the production-like set (1.0: about 1 GB of clamd RSS; default 1.0)")
    p.add_argument("--messages", type=int, default=300, help="corpus size (default 300)")
    p.add_argument("--seed", type=int, default=9, help="corpus seed (default 9, as python -m bench)")
    p.add_argument("--disable-cache", action="store_true",
                   help="run clamd with DisableCache yes: the second scan cannot reuse the first's clean verdicts")
    p.add_argument("--json", default=None, metavar="PATH", help="also write the figures (and every message's) here")
    args = p.parse_args(argv)
    if args.messages < 1:
        p.error("--messages: at least 1")
    return args


@dataclass
class _Term:
    """SIGTERM ends the run like Ctrl-C, so that clamd and the temp dir go too."""

    previous: Any = None

    def __enter__(self) -> _Term:
        self.previous = signal.signal(signal.SIGTERM, self._raise)
        return self

    def __exit__(self, *exc: object) -> None:
        signal.signal(signal.SIGTERM, self.previous)

    @staticmethod
    def _raise(signum: int, frame: FrameType | None) -> None:
        raise KeyboardInterrupt


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    args = parse_args(argv)
    command = " ".join(["python -m bench.double_scan", *argv])
    root = Path(tempfile.mkdtemp(prefix="intake-double-scan-"))  # short: clamd's socket path is under 108 bytes
    try:
        with _Term():
            results = run(args, root, command)
    except KeyboardInterrupt:
        print("double_scan: interrupted", file=sys.stderr)
        return 130
    finally:
        shutil.rmtree(root, ignore_errors=True)
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=1, ensure_ascii=False))
    sys.stdout.write(render(results))
    return 1 if results["total"]["errors"] else 0


if __name__ == "__main__":
    sys.exit(main())
