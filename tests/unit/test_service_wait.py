"""The service's waits end when cancelled, even when the awaited event is set at that very moment.

On Python 3.11 `asyncio.wait_for(event.wait(), t)` returns normally when the cancellation and the event land
in the same loop iteration (bpo-42130): a `while True` loop around it kept running after the stop cancelled
it, and `intake run` hung on SIGTERM (issue 15). `daemon.service.run.wait_event` must propagate it."""

from __future__ import annotations

import asyncio

import pytest

from daemon.service.run import wait_event


async def _loop_until_cancelled(event: asyncio.Event, turns: list[int]) -> None:
    while True:
        await wait_event(event, 5.0)
        event.clear()
        turns.append(1)


@pytest.mark.parametrize("round_", range(20))
async def test_a_cancel_that_lands_with_the_event_ends_the_loop(round_: int) -> None:
    event = asyncio.Event()
    turns: list[int] = []
    task = asyncio.ensure_future(_loop_until_cancelled(event, turns))
    await asyncio.sleep(0)  # the loop is waiting now
    event.set()  # the event and the cancel in the same iteration: the race of the stop
    task.cancel()
    done, _ = await asyncio.wait({task}, timeout=2.0)
    assert done and task.cancelled()


async def test_wait_event_times_out_and_sees_a_set_event() -> None:
    event = asyncio.Event()
    assert await wait_event(event, 0.01) is False
    event.set()
    assert await wait_event(event, 5.0) is True
