"""What every benchmark here shares, so that a reviewer can trust its ratios.

- Threads wait passively (``OMP_WAIT_POLICY=PASSIVE``, set before torch loads): spinning OpenMP
  threads make small ops 20-100x slower when anything else runs.
- :func:`environment` sets and prints the thread count, the wait policy and the machine.
- :class:`IdleCheck` measures how much CPU *other* processes took while a table was measured
  (from ``/proc/stat`` minus this process's own time), printed beside every table with the load
  average: a ratio measured on a busy machine says so.
- :func:`interleave` runs the cases in rounds (A, B, C, then B, C, A, …), so a change in load
  hits every case alike, and :func:`report` prints each case's median and spread and its ratio to
  the baseline as the median of the per-round ratios.

Import it before torch: ``import harness`` (the benchmarks folder is on ``sys.path`` when a
benchmark is run as ``python benchmarks/NAME.py``).
"""

from __future__ import annotations

import os

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
os.environ.setdefault("HF_HUB_OFFLINE", "1")

import contextlib  # noqa: E402
import platform  # noqa: E402
import statistics  # noqa: E402
import time  # noqa: E402
from collections.abc import Callable  # noqa: E402

import torch  # noqa: E402

IDLE_SHARE = 0.05  # other processes may take up to 5 % of the machine's CPU time while "idle"


def environment(threads: int) -> str:
    """Set torch's thread count and describe the run's conditions in one line."""
    torch.set_num_threads(threads)
    return (f"machine: {platform.machine()}, {os.cpu_count()} cores, torch {torch.__version__}, "
            f"{torch.get_num_threads()} threads, OMP_WAIT_POLICY={os.environ.get('OMP_WAIT_POLICY', '(unset)')}")


def _busy_seconds() -> float:
    """CPU seconds all processes have spent busy since boot (every core, from /proc/stat)."""
    with open("/proc/stat") as f:
        fields = [int(v) for v in f.readline().split()[1:]]
    idle = fields[3] + fields[4]  # idle + iowait
    return (sum(fields[:8]) - idle) / os.sysconf("SC_CLK_TCK")


def _own_seconds() -> float:
    """CPU seconds of this process, its finished children and its live descendants (e.g. servers)."""
    t = os.times()
    total = t.user + t.system + t.children_user + t.children_system
    try:
        import psutil

        for child in psutil.Process().children(recursive=True):
            with contextlib.suppress(psutil.Error):
                times = child.cpu_times()
                total += times.user + times.system
    except ImportError:  # without psutil a benchmark's own live subprocesses count as "other"
        pass
    return total


class IdleCheck:
    """``with IdleCheck() as idle: …`` then ``print(idle)``: the share of the machine's CPU that
    other processes used meanwhile, and the load average."""

    def __enter__(self) -> IdleCheck:
        self.start = (time.monotonic(), _busy_seconds(), _own_seconds())
        return self

    def __exit__(self, *exc) -> None:
        wall, busy, own = (b - a for a, b in zip(self.start, (time.monotonic(), _busy_seconds(), _own_seconds()),
                                                  strict=True))
        self.other_share = max(0.0, busy - own) / (wall * (os.cpu_count() or 1))

    @property
    def idle(self) -> bool:
        return self.other_share <= IDLE_SHARE

    def __str__(self) -> str:
        load = ", ".join(f"{v:.2f}" for v in os.getloadavg())
        verdict = "idle" if self.idle else "NOT IDLE: the ratios above may be skewed"
        return (f"idle check: other processes used {self.other_share:.1%} of the CPU during this table "
                f"(load average {load}): {verdict}")


def interleave(cases: dict[str, Callable[[], object]], repeats: int, warmup: int = 1) -> dict[str, list[float]]:
    """Wall times of each case over ``repeats`` rounds, the order rotated each round."""
    names = list(cases)
    for _ in range(warmup):
        for name in names:
            cases[name]()
    times: dict[str, list[float]] = {name: [] for name in names}
    for round_ in range(repeats):
        shift = round_ % len(names)
        for name in names[shift:] + names[:shift]:
            start = time.perf_counter()
            cases[name]()
            times[name].append(time.perf_counter() - start)
    return times


def paired_ratio(times: dict[str, list[float]], case: str, baseline: str) -> tuple[float, float, float]:
    """Median, min and max over rounds of case / baseline (the same round's two times)."""
    ratios = [a / b for a, b in zip(times[case], times[baseline], strict=True)]
    return statistics.median(ratios), min(ratios), max(ratios)


def report(times: dict[str, list[float]], baseline: str, unit: str = "s") -> list[str]:
    """One line per case: median time, spread (min-max) and the ratio to ``baseline``."""
    width = max(map(len, times))
    lines = [f"  {'case':<{width}}  median     spread (min-max)      vs {baseline} (median of {len(times[baseline])} paired rounds, range)"]
    for name, values in times.items():
        ratio, low, high = paired_ratio(times, name, baseline)
        spread = f"{min(values):.3f}-{max(values):.3f} {unit}"
        lines.append(f"  {name:<{width}}  {statistics.median(values):7.3f} {unit}  {spread:<20}  "
                     f"{ratio:.3f}x  ({low:.3f}-{high:.3f})")
    return lines


def measure(cases: dict[str, Callable[[], object]], repeats: int, baseline: str) -> tuple[dict[str, list[float]], IdleCheck]:
    """Interleave the cases under an idle check and print their table; returns the times and the check."""
    with IdleCheck() as idle:
        times = interleave(cases, repeats)
    print("\n".join(report(times, baseline)))
    return times, idle


def goal(what: str, ratio: float, limit: float) -> str:
    """``goal: WHAT <= LIMITx: RATIOx, met`` (or missed)."""
    return f"goal: {what} <= {limit:.2f}x: {ratio:.3f}x, {'met' if ratio <= limit else 'missed'}"

