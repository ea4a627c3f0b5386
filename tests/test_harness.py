"""The benchmark harness: rounds rotate, ratios are paired per round, the idle check subtracts the
benchmark's own CPU time."""

import importlib.util
from pathlib import Path

import pytest

spec = importlib.util.spec_from_file_location("harness", Path(__file__).resolve().parents[1] / "benchmarks" / "harness.py")
harness = importlib.util.module_from_spec(spec)
spec.loader.exec_module(harness)


def test_interleave_rotates_the_order_each_round():
    calls = []
    cases = {name: (lambda name=name: calls.append(name)) for name in "ABC"}
    times = harness.interleave(cases, repeats=3, warmup=1)
    assert calls == list("ABC") + list("ABC") + list("BCA") + list("CAB")  # warm-up, then rotated rounds
    assert {name: len(t) for name, t in times.items()} == {"A": 3, "B": 3, "C": 3}


def test_ratios_are_paired_by_round():
    times = {"base": [1.0, 2.0, 4.0], "case": [1.5, 2.0, 2.0]}  # per round: 1.5, 1.0, 0.5
    assert harness.paired_ratio(times, "case", "base") == (1.0, 0.5, 1.5)
    lines = harness.report(times, "base")
    assert "1.000x  (0.500-1.500)" in lines[2] and lines[1].split()[0] == "base"
    assert harness.goal("x", 0.7, 0.7).endswith("met") and harness.goal("x", 0.71, 0.7).endswith("missed")


def test_idle_check_counts_only_other_processes(monkeypatch):
    clock = {"wall": 0.0, "busy": 0.0, "own": 0.0}
    monkeypatch.setattr(harness.time, "monotonic", lambda: clock["wall"])
    monkeypatch.setattr(harness, "_busy_seconds", lambda: clock["busy"])
    monkeypatch.setattr(harness, "_own_seconds", lambda: clock["own"])
    monkeypatch.setattr(harness.os, "cpu_count", lambda: 2)
    with harness.IdleCheck() as idle:  # 10 s on 2 cores; all 20 CPU seconds busy, 19 of them ours
        clock.update(wall=10.0, busy=20.0, own=19.0)
    assert idle.other_share == pytest.approx(0.05) and idle.idle and ": idle" in str(idle)
    with harness.IdleCheck() as busy:  # another process takes a whole core
        clock.update(wall=20.0, busy=40.0, own=29.0)
    assert busy.other_share == pytest.approx(0.5) and not busy.idle and "NOT IDLE" in str(busy)
