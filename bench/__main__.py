"""`python -m bench`: the intake's throughput, latency and memory next to the floor (fetch + clamd scan).

Sets up its own clamd (test signatures, or --signatures production-like; --clamd N of them), Dovecot and
corpus in a temp dir, runs the backlog (next to the parallel and the sequential floor) and the steady-arrival
runs on SQLite and/or PostgreSQL, and with --arrivals-during-backlog the steady arrivals while a backlog drains;
writes BENCHMARKS.md (medians) and the raw results as JSON, and removes the temp dir.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import json
import math
import shutil
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

from bench import corpus, report, runner


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m bench", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--messages", type=int, default=2000, help="corpus size (default 2000; 10000 on request)")
    p.add_argument("--runs", type=int, default=3, help="runs per database; figures are medians (default 3)")
    p.add_argument("--db", choices=["sqlite", "postgres", "both"], default="both", help="database(s) (default both)")
    p.add_argument("--postgres-url", default=runner.PG_ADMIN_URL,
                   help="a server where a fresh database is created per run (default %(default)s)")
    p.add_argument("--latency-rate", type=float, default=20.0, help="steady arrival rate, messages/s (default 20)")
    p.add_argument("--latency-seconds", type=float, default=30.0,
                   help="how long mail arrives in the latency run (default 30 s; capped by --messages)")
    p.add_argument("--latency-big-interval", type=float, default=5.0,
                   help="in the latency run the big (5–19 MB) messages arrive apart, one every N s on a second "
                        "connection (default 5); 0: they stay in the steady stream as 5 %% of it")
    p.add_argument("--no-latency", action="store_true", help="skip the steady-arrival run")
    p.add_argument("--no-backlog", action="store_true",
                   help="skip the backlog run (and its floors); --arrivals-during-backlog keeps its own backlog")
    p.add_argument("--baseline-workers", type=int, default=None, metavar="N",
                   help="parallel imaplib connections for the floor the ratios are stated against (default: one "
                        f"per core, {runner.default_floor_workers()} here; 1: the sequential floor alone)")
    p.add_argument("--no-sequential-baseline", action="store_true",
                   help="skip the sequential floor that runs beside the parallel one (saves its time)")
    p.add_argument("--arrivals-during-backlog", action="store_true",
                   help="one more run per database and run: the steady arrival of small and medium mail "
                        "(--latency-rate for --latency-seconds) while a backlog of --messages drains")
    p.add_argument("--arrivals-delay", type=float, default=3.0, metavar="S",
                   help="the arrivals start S seconds after the daemon is ready on the backlog (default 3)")
    p.add_argument("--profile", action="store_true",
                   help="one extra backlog run on the first database under py-spy (not in the medians)")
    p.add_argument("--quick", action="store_true",
                   help="a small run for checking: 100 messages, 1 run, SQLite, 5 s of arrivals")
    p.add_argument("--output", default="BENCHMARKS.md", help="the report (default BENCHMARKS.md)")
    p.add_argument("--json", default=None,
                   help="also write the raw results here (default: var/bench/results-<time>.json beside --output)")
    p.add_argument("--workdir", default=None, help="temp dir parent (default: the system's)")
    p.add_argument("--keep", action="store_true", help="keep the temp dir (corpus, logs) for inspection")
    p.add_argument("--seed", type=int, default=9, help="corpus seed (default 9)")
    p.add_argument("--small-only", action="store_true",
                   help="a corpus of the short text comments only (for a long --messages 10000 linearity run)")
    p.add_argument("--imap", action="append", default=[], metavar="KEY=VALUE",
                   help="an extra [imap] config key for the daemon, e.g. max_in_flight_bytes=25165824 (repeatable)")
    p.add_argument("--daemon-env", action="append", default=[], metavar="KEY=VALUE",
                   help="an extra environment variable for the daemon, e.g. MALLOC_ARENA_MAX=2 (repeatable)")
    p.add_argument("--no-baseline", action="store_true", help="skip the baseline (before/after runs of the intake)")
    p.add_argument("--signatures", choices=["test", "production-like"], default="test",
                   help="clamd's signatures: the tests' EICAR set (default), or a generated set the size of "
                        "production's (bench/signatures.py: millions of hashes, tens of thousands of body and "
                        "logical signatures, about 1 GB of clamd RSS)")
    p.add_argument("--signature-scale", type=float, default=1.0,
                   help="size of the production-like set (1.0: about 1 GB per clamd; default 1.0)")
    p.add_argument("--clamd", type=int, default=1, metavar="N",
                   help="number of clamd (default 1): the intake and the floor use them all, round-robin")
    p.add_argument("--no-clamd-cache", action="store_true",
                   help="run clamd with DisableCache yes (the bench's way before issue 20); by default clamd keeps its "
                        "clean-file cache, as production does, and is restarted before each floor and intake run")
    p.add_argument("--intake-pythonpath", default=None,
                   help="run the daemon with PYTHONPATH=DIR (a patched tree, for before/after figures)")
    args = p.parse_args(argv)
    if args.clamd < 1:
        p.error("--clamd: at least 1")
    if args.baseline_workers is not None and args.baseline_workers < 1:
        p.error("--baseline-workers: at least 1")
    if args.quick:
        args.messages, args.runs, args.latency_seconds = 100, 1, 5.0
        if "--db" not in (argv if argv is not None else sys.argv[1:]):
            args.db = "sqlite"
    return args


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["web"]:  # `python -m bench web`: the web application's pages on 100,000 records
        from bench import web

        return web.main(argv[1:])
    args = parse_args(argv)
    runner.PG_ADMIN_URL = args.postgres_url
    runner.INTAKE_PYTHONPATH = args.intake_pythonpath
    for pair in args.imap:
        key, _, value = pair.partition("=")
        runner.EXTRA_IMAP[key.strip()] = int(value) if value.strip().lstrip("-").isdigit() else value.strip()
    for pair in args.daemon_env:
        key, _, value = pair.partition("=")
        runner.DAEMON_ENV[key.strip()] = value
    dbs = ["sqlite", "postgres"] if args.db == "both" else [args.db]
    command = "python -m bench " + " ".join(argv if argv is not None else sys.argv[1:])
    root = Path(tempfile.mkdtemp(prefix="intake-bench-", dir=args.workdir))
    started = time.time()
    results: dict[str, Any] = {"command": command.strip(), "started": dt.datetime.now(dt.UTC).isoformat(),
                               "args": vars(args), "machine": report.machine(), "runs": []}
    out_path = Path(args.output)
    stamp = dt.datetime.now().strftime("%Y%m%d-%H%M%S")
    json_path = Path(args.json) if args.json else out_path.resolve().parent / "var" / "bench" / f"results-{stamp}.json"
    json_path.parent.mkdir(parents=True, exist_ok=True)
    services = None
    try:
        t0 = time.time()
        token = uuid.uuid4().hex[:6]
        print(f"bench: building the corpus of {args.messages} messages in {root}", flush=True)
        items = corpus.write(root / "corpus", args.messages, token, args.seed, args.small_only)
        results["corpus"] = report.corpus_summary(items, time.time() - t0)
        arrivals: list[corpus.Item] = []
        if args.arrivals_during_backlog:
            # Mail of its own (another seed and token: no duplicate of a backlog message or text), big ones left
            # out; 5 % of the mix is big, so a little more than rate × seconds is built.
            wanted = int(args.latency_rate * args.latency_seconds)
            built = corpus.write(root / "arrivals", math.ceil(wanted / 0.95) + 2, token + "a", args.seed + 1,
                                 args.small_only)
            arrivals = [i for i in built if i.kind != corpus.BIG][:wanted]
            results["arrivals_corpus"] = report.corpus_summary(arrivals, 0.0)
        print(f"bench: starting {args.clamd} clamd with the {args.signatures} signatures", flush=True)
        services = runner.start_services(root / "services", args.signatures, args.clamd, args.signature_scale,
                                         cache=not args.no_clamd_cache)
        results["signatures"] = services.signatures
        print(f"bench:   {json.dumps(services.signatures)}", flush=True)
        results["versions"] = report.versions(services.clamd_url, args.postgres_url if "postgres" in dbs else None,
                                              args.intake_pythonpath)
        for db in dbs:
            for k in range(1, args.runs + 1):
                if not args.no_backlog:
                    print(f"bench: {db} backlog run {k}/{args.runs} …", flush=True)
                    res = runner.backlog_run(services, items, db, f"{db}-b{k}", args.baseline_workers,
                                             skip_baseline=args.no_baseline,
                                             sequential_baseline=not args.no_sequential_baseline)
                    results["runs"].append(res)
                    print("bench:   " + report.one_line(res), flush=True)
                    _save(json_path, results)
                if not args.no_latency:
                    print(f"bench: {db} latency run {k}/{args.runs} ({args.latency_rate:g}/s) …", flush=True)
                    lat = runner.latency_run(services, items, db, f"{db}-l{k}", args.latency_rate,
                                             args.latency_seconds, args.latency_big_interval or None)
                    results["runs"].append(lat)
                    print("bench:   " + report.one_line(lat), flush=True)
                    _save(json_path, results)
                if args.arrivals_during_backlog:
                    print(f"bench: {db} arrivals during a backlog, run {k}/{args.runs} ({len(arrivals)} at "
                          f"{args.latency_rate:g}/s, {len(items)} in the backlog) …", flush=True)
                    arr = runner.backlog_arrivals_run(services, items, arrivals, db, f"{db}-a{k}", args.latency_rate,
                                                      args.latency_seconds, args.arrivals_delay)
                    results["runs"].append(arr)
                    print("bench:   " + report.one_line(arr), flush=True)
                    if not arr["valid"]:
                        print("bench:   WARNING: the backlog drained before the arrivals ended; use a larger "
                              "--messages or a shorter --latency-seconds", file=sys.stderr, flush=True)
                    _save(json_path, results)
        if args.profile:
            print(f"bench: {dbs[0]} profiled backlog run (py-spy) …", flush=True)
            prof = runner.backlog_run(services, items, dbs[0], f"{dbs[0]}-profile", args.baseline_workers,
                                      profile=True, skip_baseline=True)
            prof["kind"] = "profile"
            if prof["intake"].get("pyspy_file"):
                keep = out_path.parent / "var" / "bench" / Path(prof["intake"]["pyspy_file"]).name
                keep.parent.mkdir(parents=True, exist_ok=True)
                with contextlib.suppress(OSError):
                    shutil.copy(prof["intake"]["pyspy_file"], keep)
                    prof["intake"]["pyspy_file"] = str(keep)
            results["runs"].append(prof)
            print("bench:   " + report.one_line(prof), flush=True)
        results["elapsed_s"] = time.time() - started
        _save(json_path, results)
        out_path.write_text(report.render(results, out_path))
        print(f"bench: wrote {out_path} and {json_path} ({results['elapsed_s'] / 60:.1f} min)", flush=True)
        return 0
    except KeyboardInterrupt:
        print("bench: interrupted", file=sys.stderr)
        return 130
    finally:
        if services is not None:
            runner.stop_services(services)
        if args.keep:
            print(f"bench: kept {root}", flush=True)
        else:
            shutil.rmtree(root, ignore_errors=True)


def _save(path: Path, results: dict[str, Any]) -> None:
    path.write_text(json.dumps(results, indent=1, default=str))


if __name__ == "__main__":
    sys.exit(main())
