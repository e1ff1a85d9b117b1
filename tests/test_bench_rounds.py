"""bench/rounds.py: the arithmetic every bench's headline figures rest on."""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "bench"))

import rounds


def test_spread_is_median_and_range():
    assert rounds.spread([3.0, 1.0, 2.0, 10.0, 4.0]) == rounds.Spread(3.0, 1.0, 10.0)
    assert rounds.spread([1.0, 2.0, 3.0, 4.0]).median == 2.5
    with pytest.raises(ValueError):
        rounds.spread([])


def test_ratios_are_per_round_and_per_kind():
    result = rounds.Rounds(per=4)
    result.add(rounds.Sample(wall=1.0, cpu=0.8), rounds.Sample(wall=3.0, cpu=1.2))
    result.add(rounds.Sample(wall=2.0, cpu=1.0), rounds.Sample(wall=2.0, cpu=1.1))
    result.add(rounds.Sample(wall=1.0, cpu=0.0), rounds.Sample(wall=1.5, cpu=0.5))
    assert result.ratios("wall") == [3.0, 1.0, 1.5]
    # A round whose floor used no measurable CPU has no CPU ratio.
    assert result.ratios("cpu") == pytest.approx([1.5, 1.1])
    # Per unit: seconds divided by ``per``.
    assert result.each("ours", "cpu") == rounds.Spread(
        pytest.approx(1.1 / 4), pytest.approx(0.5 / 4), pytest.approx(1.2 / 4)
    )


def test_lines_put_the_cpu_ratio_first_with_its_spread():
    result = rounds.Rounds(per=2)
    for floor, ours in ((0.10, 0.13), (0.10, 0.12), (0.20, 0.22), (0.10, 0.14), (0.10, 0.15)):
        result.add(rounds.Sample(wall=floor * 3, cpu=floor), rounds.Sample(wall=ours, cpu=ours))
    cpu, wall = result.lines()
    assert cpu.startswith("CPU")
    assert "ratio 1.30× (1.10–1.50×)" in cpu
    assert "5 rounds" in cpu
    # Ours per unit (2 photos a round): CPU median 0.14 s / 2 = 70 ms, from 60 to 110 ms.
    assert "ours 70 ms (60–110 ms)" in cpu
    assert "floor 50 ms (50–100 ms)" in cpu
    assert wall.startswith("wall")
    assert "ratio 0.43×" in wall


def test_interleave_takes_turns_and_runs_at_least_five_rounds():
    calls: list[str] = []
    clock = iter(float(i) for i in range(100))
    result = rounds.interleave(
        lambda: calls.append("floor"),
        lambda: calls.append("ours"),
        2,
        cpu=lambda: next(clock),
    )
    assert calls == ["floor", "ours"] * rounds.MIN_ROUNDS
    # Each measure reads the clock before and after: one "second" of CPU each side.
    assert [s.cpu for s in result.floor] == [1.0] * rounds.MIN_ROUNDS
    assert [s.cpu for s in result.ours] == [1.0] * rounds.MIN_ROUNDS


def test_cpu_time_counts_this_process_and_running_ones():
    before_self, before_proc = rounds.self_cpu(), rounds.proc_cpu([os.getpid()])
    total = 0
    for i in range(3_000_000):
        total += i
    assert total > 0
    assert rounds.self_cpu() > before_self
    assert rounds.proc_cpu([os.getpid()]) > before_proc
    assert rounds.proc_cpu([2**22 + 12345]) == 0  # no such process: counts nothing


def test_parse_totals_reads_callgrind_output():
    text = "events: Ir\nfl=x\nfn=main\n1 10\nsummary: 123456\ntotals: 123456\n"
    assert rounds.parse_totals(text) == 123456
    with pytest.raises(ValueError):
        rounds.parse_totals("events: Ir\n")


@pytest.mark.skipif(shutil.which("valgrind") is None, reason="valgrind is not installed")
def test_instructions_counts_more_for_more_work():
    little = rounds.instructions(["/bin/true"])
    more = rounds.instructions(["/bin/sh", "-c", "i=0; while [ $i -lt 200 ]; do i=$((i+1)); done"])
    assert 0 < little < more
