"""A real LMTP listener in its own process, for the kill -9 tests (tests/integration/test_lmtp.py).

It builds the Intake from the environment and the config file exactly as the daemon does
(INTAKE_CONFIG with an [lmtp] table, INTAKE_DATABASE_URL, INTAKE_DATA_DIR, INTAKE_CLAMD), serves
LMTP on the configured Unix socket and prints "ready" once it listens.

INTAKE_TEST_CRASH_AT makes it die with os._exit(137) (no cleanup, like kill -9) at one point of a
delivery; the hooks live here, in the test helper, not in the daemon:
  before_process  the DATA has ended, nothing is stored yet
  after_raw       the raw bytes are fsync'd in the raw store, the record is not committed
  after_commit    the record is committed, the 250 is not written yet
"""

from __future__ import annotations

import asyncio
import os
from typing import Any, NoReturn

from daemon import logs
from daemon.config import load_config
from daemon.pipeline import Intake
from daemon.rules import load_rules
from daemon.sources.lmtp import LmtpConfig, start_lmtp


def install_crash(intake: Intake, point: str) -> None:
    if point == "before_process":
        def process_then_die(*_a: Any, **_kw: Any) -> NoReturn:
            os._exit(137)

        intake.process = process_then_die  # type: ignore[method-assign]
    elif point == "after_raw":
        put = intake.raw_store.put

        def put_then_die(*a: Any, **kw: Any) -> Any:
            put(*a, **kw)
            os._exit(137)

        intake.raw_store.put = put_then_die  # type: ignore[method-assign]
    elif point == "after_commit":
        process = intake.process

        def commit_then_die(*a: Any, **kw: Any) -> NoReturn:
            process(*a, **kw)
            os._exit(137)

        intake.process = commit_then_die  # type: ignore[method-assign]
    elif point:
        raise SystemExit(f"unknown INTAKE_TEST_CRASH_AT {point!r}")


async def serve(intake: Intake, lmtp: LmtpConfig) -> None:
    await start_lmtp(intake, lmtp)
    print("ready", flush=True)
    await asyncio.Event().wait()


def main() -> None:
    logs.configure("INFO")
    config = load_config()
    intake = Intake.from_config(config, load_rules(config.rules_path))
    intake.raw_store.init()
    install_crash(intake, os.environ.get("INTAKE_TEST_CRASH_AT", ""))
    asyncio.run(serve(intake, LmtpConfig.from_config(config.raw)))


if __name__ == "__main__":
    main()
