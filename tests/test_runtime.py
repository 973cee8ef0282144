"""Threading: the environment set before torch loads (a short OpenMP spin, one NumPy BLAS thread)
and the governor that gives torch the cores other processes leave free."""

import os
import subprocess
import sys
import time

import pytest

from tests.conftest import busy_neighbour, others_during
from asrlab.runtime import (THREAD_ENV_DEFAULTS, CpuTimes, ThreadGovernor, read_cpu_times)

PROBE = ("import os, asrlab, torch; print(*(os.environ.get(k, '-') for k in "
         "('GOMP_SPINCOUNT', 'OPENBLAS_NUM_THREADS', 'OMP_WAIT_POLICY')))")
BUSY = [sys.executable, "-c", "while True: pass"]


def run_probe(env_extra: dict) -> list[str]:
    env = {k: v for k, v in os.environ.items()
           if k not in THREAD_ENV_DEFAULTS and k != "OMP_WAIT_POLICY"}
    env.update(env_extra)
    return subprocess.run([sys.executable, "-c", PROBE], env=env, capture_output=True,
                          text=True, check=True).stdout.split()


def test_importing_asrlab_sets_the_thread_environment():
    assert run_probe({}) == ["100000", "1", "-"]


def test_a_value_the_user_set_is_kept():
    assert run_probe({"GOMP_SPINCOUNT": "7", "OPENBLAS_NUM_THREADS": "4"}) == ["7", "4", "-"]
    # a waiting policy the user chose is left alone, spin count included
    assert run_probe({"OMP_WAIT_POLICY": "PASSIVE"}) == ["-", "1", "PASSIVE"]


class FakeMachine:
    """CPU readings and a clock the test moves: `others` cores busy besides `own` of ours."""

    def __init__(self):
        self.t, self.busy, self.own = 0.0, 0.0, 0.0

    def run(self, seconds: float, others: float, own: float) -> None:
        self.t += seconds
        self.busy += seconds * (others + own)
        self.own += seconds * own

    def read(self) -> CpuTimes:
        return CpuTimes(self.busy, self.own)


def test_the_governor_gives_up_a_core_to_a_busy_process_and_takes_it_back():
    m, calls = FakeMachine(), []
    g = ThreadGovernor(2, calls.append, interval_s=10, read=m.read, clock=lambda: m.t,
                       first_interval_s=2)
    m.run(1, others=1.0, own=1.0)
    assert g.tick() is None and calls == []  # not before the first check
    m.run(1, others=1.0, own=1.0)
    assert g.tick() == 1 and calls == [1] and g.last_others == pytest.approx(1.0)
    m.run(5, others=0.0, own=1.0)
    assert g.tick() is None  # then every interval_s, not sooner
    m.run(5, others=1.8, own=1.0)  # half the interval idle, half busy: still taken
    assert g.tick() is None and calls == [1] and g.last_others == pytest.approx(0.9)
    m.run(10, others=0.0, own=1.0)  # gone: both cores again
    assert g.tick() == 2 and calls == [1, 2]
    m.run(10, others=0.4, own=2.0)  # a light process leaves the core to us
    assert g.tick() is None and g.threads == 2


def test_the_governor_keeps_one_thread_however_busy_the_machine():
    m, calls = FakeMachine(), []
    g = ThreadGovernor(4, calls.append, interval_s=1, read=m.read, clock=lambda: m.t)
    m.run(1, others=7.0, own=1.0)
    assert g.tick() == 1 and calls == [1]


def test_without_readings_the_governor_changes_nothing():
    calls, t = [], [0.0]
    g = ThreadGovernor(2, calls.append, interval_s=1, read=lambda: None, clock=lambda: t[0])
    t[0] = 100.0
    assert g.tick() is None and calls == [] and g.threads == 2


@pytest.mark.skipif(read_cpu_times() is None, reason="needs Linux /proc")
def test_a_busy_process_beside_us_counts_and_our_own_work_does_not():
    base = others_during(1.0, spin=False)  # whatever else this machine runs
    if base > len(os.sched_getaffinity(0)) - 1.3:
        pytest.skip(f"other processes keep {base:.1f} cores busy: no core left to measure with")
    mine = others_during(1.0, spin=True)  # our own busy second is not another process's
    with busy_neighbour():
        time.sleep(0.3)  # let it start
        theirs = others_during(1.5, spin=False)
    with_child = subprocess.Popen(BUSY)  # our own child's work is ours (DataLoader workers)
    try:
        time.sleep(0.3)
        child = others_during(1.5, spin=False)
    finally:
        with_child.kill()
        with_child.wait()
    assert mine < base + 0.5, (base, mine)
    assert theirs > base + 0.7, (base, theirs)
    assert child < base + 0.5, (base, child)


def test_peak_memory_resets_and_measures_what_runs_after():
    """In a fresh interpreter: in a long-lived one, freed heap pages may serve the next array
    without the resident size growing."""
    if not sys.platform.startswith("linux"):
        pytest.skip("reads /proc")
    script = """
import numpy as np
from asrlab.runtime import memory_status, reset_peak_memory
big = np.ones(40 * 2 ** 20 // 8)  # 40 MB, touched
del big
assert reset_peak_memory()
rss, peak = memory_status()
block = np.ones(20 * 2 ** 20 // 8)
print(rss, peak, memory_status()[1])
"""
    env = {**os.environ, "PYTHONPATH": os.path.dirname(os.path.dirname(os.path.abspath(__file__)))}
    rss, peak, peak2 = map(int, subprocess.run([sys.executable, "-c", script], env=env, text=True,
                                               capture_output=True, check=True).stdout.split())
    assert peak - rss < 8 * 2 ** 20  # the 40 MB are no longer the peak
    assert peak2 - rss >= 18 * 2 ** 20  # the 20 MB block is


def test_freed_buffers_go_back_to_the_system_with_the_mmap_threshold_pinned():
    """Without the pin, glibc raises its mmap threshold after the first large free and parks
    the next buffers of that size in an arena, where they stay resident."""
    import subprocess
    import sys

    import platform

    if platform.libc_ver()[0] != "glibc":
        pytest.skip("glibc's allocator")
    script = """
import sys, threading, numpy as np
from asrlab.runtime import memory_status, pin_mmap_threshold, trim_heap
if sys.argv[1] == "pin":
    assert pin_mmap_threshold()
def work():
    for _ in range(20):
        keep = [np.ones(2 ** 18, np.float32) for _ in range(16)]  # 1 MB each
        del keep
rss0 = memory_status()[0]
threads = [threading.Thread(target=work) for _ in range(4)]
[t.start() for t in threads]; [t.join() for t in threads]
if sys.argv[1] == "pin":
    trim_heap()
print((memory_status()[0] - rss0) / 2 ** 20)
"""
    import os

    env = {**os.environ, "PYTHONPATH": os.path.dirname(os.path.dirname(os.path.abspath(__file__)))}
    kept = {mode: float(subprocess.run([sys.executable, "-c", script, mode], env=env, text=True,
                                       capture_output=True, check=True).stdout)
            for mode in ("pin", "none")}
    assert kept["pin"] < 4, kept
    assert kept["none"] > kept["pin"] + 8, kept  # what the pin is for, on this glibc
