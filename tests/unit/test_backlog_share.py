"""How many places the backlog keeps while new mail found during a pass is in flight (daemon/sources/imap/sync.py,
BACKLOG_SHARE): few enough that new mail shares clamd and the CPU with few backlog records, never none, so that
steady arrivals cannot stop the backlog. The decision is a plain function of what is in flight; the end-to-end
order (new mail first) is test_mail_arriving_during_a_backlog_pass_is_recorded_before_the_backlog
(tests/integration/test_imap.py).
"""

from __future__ import annotations

import asyncio

import pytest

from daemon.sources.imap.config import ImapConfig
from daemon.sources.imap.progress import Progress
from daemon.sources.imap.sync import BACKLOG_SHARE, MailboxSync


async def _thread(*_args: object) -> None:
    return None


def _sync(max_in_flight: int, backlog: int, fresh: int) -> MailboxSync:
    sync = MailboxSync(ImapConfig(host="h", user="u", password="", max_in_flight=max_in_flight), None,  # type: ignore[arg-type]
                       "owner", asyncio.Event(), _thread, Progress(), once=False)
    loop = asyncio.get_running_loop()
    old = {loop.create_future() for _ in range(backlog)}
    new = {loop.create_future() for _ in range(fresh)}
    sync.tasks = old | new  # type: ignore[assignment]
    sync._fresh = new  # type: ignore[assignment]
    return sync


@pytest.mark.parametrize("max_in_flight", [1, 2, 8, 16, 32])
def test_the_backlog_keeps_at_least_one_place_and_at_most_its_share(max_in_flight: int) -> None:
    async def check() -> None:
        keep = max(1, max_in_flight // BACKLOG_SHARE)
        for fresh in (1, 4, 12):
            # below its share the backlog may start one more; at its share it waits
            assert not _sync(max_in_flight, keep - 1, fresh)._backlog_yields(1)
            assert _sync(max_in_flight, keep, fresh)._backlog_yields(1)
        # with no new mail in flight the backlog is not held back at all
        assert not _sync(max_in_flight, max_in_flight, 0)._backlog_yields(1)

    asyncio.run(check())

