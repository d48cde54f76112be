"""The parse stage's memory budget (daemon/budget.py): big parses take turns, small ones pass beside them."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest

from daemon.budget import PARSE_FACTOR, MemoryBudget
from daemon.config import ConfigError, load_config
from daemon.pipeline import Intake

MB = 1024 * 1024


class Holder(threading.Thread):
    """Holds `weight` of the budget from when it gets in until `leave` is set."""

    def __init__(self, budget: MemoryBudget, weight: int) -> None:
        super().__init__(daemon=True)
        self.budget, self.weight = budget, weight
        self.inside, self.leave = threading.Event(), threading.Event()

    def run(self) -> None:
        with self.budget.hold(self.weight):
            self.inside.set()
            assert self.leave.wait(30)


def test_two_big_parses_never_overlap_but_small_ones_pass_beside_a_big_one() -> None:
    budget = MemoryBudget(128 * MB)
    big, small = PARSE_FACTOR * 19 * MB, PARSE_FACTOR * 2000
    first = Holder(budget, big)
    first.start()
    assert first.inside.wait(10)
    second = Holder(budget, big)
    second.start()  # before the small ones: it is waiting by the time they get in
    smalls = [Holder(budget, small) for _ in range(3)]
    for h in smalls:
        h.start()
    assert all(h.inside.wait(10) for h in smalls)  # beside the big one
    assert not second.inside.is_set()  # two big parses would exceed the budget
    assert budget.used == big + 3 * small
    first.leave.set()
    assert second.inside.wait(10)
    for h in (second, *smalls):
        h.leave.set()
        h.join(10)
    assert budget.peak == big + 3 * small and budget.used == 0


def test_a_message_over_the_whole_budget_still_runs_alone() -> None:
    budget = MemoryBudget(16 * MB)
    first, second = Holder(budget, PARSE_FACTOR * 19 * MB), Holder(budget, PARSE_FACTOR * 19 * MB)
    first.start()
    assert first.inside.wait(10)  # over the budget, but nothing else holds any: it runs
    second.start()
    small = Holder(budget, 1)
    small.start()
    assert not small.inside.wait(0.3)  # nothing fits beside a message over the whole budget
    assert not second.inside.is_set()
    first.leave.set()
    # One of the two waiting goes next, alone (which one is up to the threads); then the other.
    for h in (second, small):
        h.leave.set()
    for h in (second, small):
        assert h.inside.wait(10)
        h.join(10)
    assert budget.peak == PARSE_FACTOR * 19 * MB and budget.used == 0


def test_the_pipeline_parses_under_the_budget(intake: Intake) -> None:
    from daemon.model import Arrival

    from mails import mail

    raw = mail(body="予算の中で解析")
    intake.process(Arrival(raw=raw, source="file"))
    assert intake.parse_budget is not None
    assert intake.parse_budget.peak == PARSE_FACTOR * len(raw) and intake.parse_budget.used == 0


def test_parse_memory_bytes_is_read_and_checked(tmp_path: Path) -> None:
    conf = tmp_path / "intake.toml"
    conf.write_text("[intake]\nparse_memory_bytes = 268435456\n")
    assert load_config(conf, env={}).parse_memory_bytes == 256 * MB
    assert load_config(None, env={}).parse_memory_bytes == 128 * MB
    conf.write_text("[intake]\nparse_memory_bytes = 1000\n")
    with pytest.raises(ConfigError, match=r"intake\.parse_memory_bytes: must be at least 1048576"):
        load_config(conf, env={})
    conf.write_text('[intake]\nparse_memory_bytes = "lots"\n')
    with pytest.raises(ConfigError, match=r"intake\.parse_memory_bytes: wrong type str"):
        load_config(conf, env={})
