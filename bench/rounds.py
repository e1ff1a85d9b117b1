"""Figures that hold on a busy machine: interleaved rounds, CPU time, instruction counts.

Every bench runs its floor and ours in turns (floor, ours, floor, ours …, at least five
rounds), records wall time *and* CPU time (user + sys of every process involved) for each,
and prints the median and the spread (min–max) of the ratio. Where both sides are
CPU-bound the CPU-time ratio is the headline: another process taking a core stretches the
wall clock of whichever side it lands on, but not the CPU either side spends.

``instructions`` runs a command under ``valgrind --tool=callgrind`` and returns the
instructions it executed: a count that does not move with the machine's load, for steering
work on one photo or one webhook (run a no-op of the same script and subtract it, so the
interpreter's start-up and imports cancel out).
"""

from __future__ import annotations

import os
import re
import resource
import statistics
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

MIN_ROUNDS = 5
_TICKS = os.sysconf("SC_CLK_TCK")


@dataclass(frozen=True)
class Sample:
    """One side of one round: seconds of wall clock and of CPU (user + sys, all processes)."""

    wall: float
    cpu: float


@dataclass(frozen=True)
class Spread:
    median: float
    low: float
    high: float

    def text(self, fmt: str = "{:.2f}", unit: str = "") -> str:
        return (
            f"{fmt.format(self.median)}{unit} "
            f"({fmt.format(self.low)}–{fmt.format(self.high)}{unit})"
        )


def spread(values: Iterable[float]) -> Spread:
    data = list(values)
    if not data:
        raise ValueError("no values")
    return Spread(statistics.median(data), min(data), max(data))


def self_cpu() -> float:
    """CPU seconds of this process and of every child it has waited for."""
    own = resource.getrusage(resource.RUSAGE_SELF)
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


def proc_cpu(pids: Iterable[int]) -> float:
    """CPU seconds (user + sys) of running processes, from ``/proc/<pid>/stat``, including
    their threads and the children they have waited for; a process gone counts 0."""
    total = 0
    for pid in pids:
        try:
            stat = Path(f"/proc/{pid}/stat").read_text()
        except (FileNotFoundError, ProcessLookupError):
            continue
        # The command name may hold spaces; fields after its closing parenthesis are fixed.
        fields = stat[stat.rindex(")") + 2 :].split()
        total += sum(int(value) for value in fields[11:15])  # utime stime cutime cstime
    return total / _TICKS


def measure(work: Callable[[], object], cpu: Callable[[], float] = self_cpu) -> Sample:
    cpu_before, started = cpu(), time.perf_counter()
    work()
    wall = time.perf_counter() - started
    return Sample(wall=wall, cpu=cpu() - cpu_before)


@dataclass
class Rounds:
    """Floor and ours, measured in turns; ``per`` divides the figures (photos, messages…)."""

    per: int = 1
    floor: list[Sample] = field(default_factory=list)
    ours: list[Sample] = field(default_factory=list)

    def add(self, floor: Sample, ours: Sample) -> None:
        self.floor.append(floor)
        self.ours.append(ours)

    def ratios(self, kind: str) -> list[float]:
        """ours / floor, round by round, of ``wall`` or ``cpu`` (a round whose floor took
        no measurable CPU is left out)."""
        return [
            getattr(o, kind) / getattr(f, kind)
            for f, o in zip(self.floor, self.ours, strict=True)
            if getattr(f, kind) > 0
        ]

    def each(self, side: str, kind: str) -> Spread:
        """Seconds per unit (``per``) of one side, across rounds."""
        return spread(getattr(s, kind) / self.per for s in getattr(self, side))

    def lines(self, unit: str = "ms", scale: float = 1000.0, headline: str = "cpu") -> list[str]:
        """Summary lines: per-unit wall and CPU of each side and both ratios, median
        (min–max) over the rounds, the headline ratio first."""
        smallest = scale * min(s.wall for s in self.floor) / self.per
        fmt = "{:.2f}" if smallest < 10 else "{:.1f}" if smallest < 100 else "{:.0f}"
        out = []
        for kind in (headline, "wall" if headline == "cpu" else "cpu"):
            floor = self.each("floor", kind)
            ours = self.each("ours", kind)
            ratio = spread(self.ratios(kind)) if self.ratios(kind) else None
            name = "CPU" if kind == "cpu" else "wall"
            out.append(
                f"{name:4}: ours {_scaled(ours, scale, fmt, unit)}, floor "
                f"{_scaled(floor, scale, fmt, unit)}; ratio "
                + (ratio.text(unit="×") if ratio else "n/a")
                + (f"  [{len(self.floor)} rounds, median (min–max)]" if kind == headline else "")
            )
        return out


def _scaled(value: Spread, scale: float, fmt: str, unit: str) -> str:
    return Spread(value.median * scale, value.low * scale, value.high * scale).text(fmt, f" {unit}")


def interleave(
    floor: Callable[[], object],
    ours: Callable[[], object],
    rounds: int,
    *,
    per: int = 1,
    cpu: Callable[[], float] = self_cpu,
    between: Callable[[], object] | None = None,
) -> Rounds:
    """Run ``floor`` and ``ours`` in turns, ``rounds`` times each (at least MIN_ROUNDS)."""
    result = Rounds(per=per)
    for _ in range(max(rounds, MIN_ROUNDS)):
        if between:
            between()
        floor_sample = measure(floor, cpu)
        if between:
            between()
        result.add(floor_sample, measure(ours, cpu))
    return result


_TOTALS = re.compile(r"^(?:summary|totals):\s+(\d+)", re.MULTILINE)


def instructions(argv: Sequence[str], env: dict[str, str] | None = None) -> int:
    """Instructions ``argv`` executes under callgrind (all its threads; children not
    followed). The command's own output is discarded; a failure raises."""
    with tempfile.TemporaryDirectory(prefix="huifang-callgrind-") as directory:
        out = Path(directory) / "callgrind.out"
        command = [
            "valgrind",
            "--tool=callgrind",
            f"--callgrind-out-file={out}",
            "--dump-line=no",
            "--compress-strings=no",
            *argv,
        ]
        run_env = dict(env or os.environ)
        run_env.setdefault("PYTHONHASHSEED", "0")  # the same dict layouts in every run
        done = subprocess.run(command, env=run_env, capture_output=True, text=True, check=False)
        if done.returncode != 0:
            raise RuntimeError(f"{argv[0]} under callgrind failed:\n{done.stderr[-2000:]}")
        return parse_totals(out.read_text(errors="replace"))


def parse_totals(callgrind_out: str) -> int:
    """The instruction total of a callgrind output file."""
    found = _TOTALS.findall(callgrind_out)
    if not found:
        raise ValueError("no totals in callgrind output")
    return int(found[-1])


def instruction_ratio(
    floor: Sequence[str],
    ours: Sequence[str],
    baseline: Sequence[str],
    count: int = 1,
    *,
    floor_baseline: Sequence[str] | None = None,
) -> tuple[float, float, float]:
    """Instructions per unit of the floor and of ours, each less its baseline command's
    (the same script doing all but the counted work: start-up, imports, warm-up), and
    their ratio. ``floor_baseline`` when the floor starts up differently from ours."""
    base = instructions(baseline)
    floor_base = instructions(floor_baseline) if floor_baseline else base
    floor_ir = (instructions(floor) - floor_base) / count
    ours_ir = (instructions(ours) - base) / count
    return floor_ir, ours_ir, ours_ir / floor_ir
