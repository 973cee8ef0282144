"""Process-wide CPU threading: the environment set before torch or NumPy load their thread pools,
and the thread count that follows the machine's load while training.

Measured on dev-2c (AMD EPYC VM, 2 cores; docs/benchmarks.md, "Threading"), training audio-s/s
with 2 torch threads:

| OpenMP waiting                         | idle | one busy process beside it |
|----------------------------------------|-----:|---------------------------:|
| passive (sleep at every barrier)       |  160 |                        137 |
| spin 100k iterations, then sleep       |  354 |     (10k: 40; spin always: 113) |
| (1 thread: no barriers at all)         |  290 |                        260 |

Sleeping at each barrier costs more than a second thread gains where waking a core is slow (a
virtual machine's idle vCPU), and spinning collapses when another process holds a core (the issue
measured 4-16 audio-s/s). Hence two settings:

- ``GOMP_SPINCOUNT=100000``: OpenMP threads spin briefly at a barrier, then sleep: the idle speed
  of spinning without threads spinning for long when there is no work;
- ``ThreadGovernor``: while training, every few seconds, counts the cores other processes keep
  busy (/proc/stat less this process's own CPU time) and sets torch's threads to the cores left
  (at least one): all cores on an idle machine, one thread beside a busy process.

``OPENBLAS_NUM_THREADS=1``: NumPy's BLAS (the mel filterbank matmul) runs on the calling thread,
so its spinning workers do not take cores from torch's.

The environment is read once, when the libraries initialise, so this module is imported by
``asrlab/__init__.py`` before anything imports torch or NumPy. A value the user has already set
(``OMP_WAIT_POLICY``, ``GOMP_SPINCOUNT``, ``OPENBLAS_NUM_THREADS``) is kept; so is a thread count
the user asked for (``--threads``: the governor stays off).
"""

from __future__ import annotations

import functools
import os
import time
from collections.abc import Callable
from dataclasses import dataclass

THREAD_ENV_DEFAULTS = {"GOMP_SPINCOUNT": "100000", "OPENBLAS_NUM_THREADS": "1"}


def set_thread_env() -> dict[str, str]:
    """Apply THREAD_ENV_DEFAULTS where unset; returns the values now in force."""
    for key, value in THREAD_ENV_DEFAULTS.items():
        if key == "GOMP_SPINCOUNT" and "OMP_WAIT_POLICY" in os.environ:
            continue  # the user chose a waiting policy: leave libgomp's spin count to it
        os.environ.setdefault(key, value)
    return {key: os.environ[key] for key in THREAD_ENV_DEFAULTS if key in os.environ}


def physical_cores() -> int:
    """Physical cores this process may run on (SMT siblings counted once).

    Read from Linux's sysfs topology (no psutil dependency for one number); elsewhere, or when
    it cannot be read, the logical CPUs available to the process."""
    try:
        cpus = os.sched_getaffinity(0)
    except AttributeError:  # not Linux
        return os.cpu_count() or 1
    cores = set()
    for cpu in cpus:
        try:
            with open(f"/sys/devices/system/cpu/cpu{cpu}/topology/core_cpus_list") as f:
                cores.add(f.read().strip())
        except OSError:
            return len(cpus) or 1
    return len(cores) or 1


def default_threads(requested: int | None = None, processes: int = 1) -> int:
    """Threads for torch's intra-op pool: `requested` when given, else the physical cores shared
    among `processes` on this machine (torchrun's LOCAL_WORLD_SIZE), at least one."""
    return requested if requested else max(1, physical_cores() // max(1, processes))


BF16_CPU_FLAGS = ("avx512_bf16", "amx_bf16")  # native bf16 dot products


@functools.cache
def cpu_has_bf16() -> bool:
    """Whether the CPU computes bf16 natively (AVX512_BF16 or AMX), from /proc/cpuinfo.

    Where it does, bf16 autocast made a training step 1.49x faster (bench/train_step.py); where
    it does not, the same autocast was 11x slower (an AVX2 EPYC), so it is off there."""
    try:
        with open("/proc/cpuinfo") as f:
            flags = next((line.split(":", 1)[1].split() for line in f
                          if line.startswith("flags")), [])
    except OSError:  # not Linux: assume not
        return False
    return any(flag in flags for flag in BF16_CPU_FLAGS)


# ---- threads that follow the load -----------------------------------------------------------

CLOCK_TICKS = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


@dataclass(frozen=True)
class CpuTimes:
    """Seconds since boot: busy time of the CPUs this process may run on, and the CPU time of
    this process (all its threads) and of its live children (DataLoader workers)."""
    busy_s: float
    own_s: float


def _proc_cpu_s(pid: str) -> float:
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()  # after "(comm)": state is fields[0]
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS  # utime + stime


def read_cpu_times() -> CpuTimes | None:
    """From /proc (Linux); None where it cannot be read (then nothing is adapted)."""
    try:
        cpus = {f"cpu{c}" for c in os.sched_getaffinity(0)}
        busy = 0
        with open("/proc/stat") as f:
            for line in f:
                name, *values = line.split()
                if name in cpus:  # user nice system idle iowait irq softirq steal ...
                    v = [int(x) for x in values]
                    busy += v[0] + v[1] + v[2] + v[5] + v[6] + (v[7] if len(v) > 7 else 0)
        own = _proc_cpu_s("self")
        for task in os.listdir("/proc/self/task"):
            try:
                with open(f"/proc/self/task/{task}/children") as f:
                    for child in f.read().split():
                        own += _proc_cpu_s(child)
            except OSError:  # a child that just ended, or no children file (old kernels)
                continue
        return CpuTimes(busy / CLOCK_TICKS, own)
    except (OSError, AttributeError, ValueError, IndexError):
        return None


def others_busy_cores(before: CpuTimes, after: CpuTimes, seconds: float) -> float:
    """Cores that other processes kept busy between two readings."""
    if seconds <= 0:
        return 0.0
    return max(0.0, ((after.busy_s - before.busy_s) - (after.own_s - before.own_s)) / seconds)


class ThreadGovernor:
    """Keeps torch's intra-op threads at the cores other processes leave free.

    `tick()` is cheap (a clock read) and is called once per training step; after
    `first_interval_s`, then every `interval_s`, it reads /proc and, when the cores left differ
    from the threads in use, calls `set_threads(n)` and returns n (the first check comes early:
    a machine busy from the start should not cost ten seconds of stalled barriers). A core counts
    as taken when other processes kept it busy more than half the interval (round half down: a
    process at 50% leaves the core to us)."""

    def __init__(self, max_threads: int, set_threads: Callable[[int], None],
                 interval_s: float = 10.0, read: Callable[[], CpuTimes | None] = read_cpu_times,
                 clock: Callable[[], float] = time.monotonic, first_interval_s: float = 2.0):
        self.max_threads, self.set_threads = max(1, max_threads), set_threads
        self.interval_s, self.read, self.clock = interval_s, read, clock
        self.threads = self.max_threads
        self.last_others = 0.0
        self._t, self._times = clock(), read()
        self._wait = min(first_interval_s, interval_s)

    def tick(self) -> int | None:
        now = self.clock()
        if self._times is None or now - self._t < self._wait:
            return None
        self._wait = self.interval_s
        times = self.read()
        if times is None:
            self._times = None
            return None
        self.last_others = others_busy_cores(self._times, times, now - self._t)
        self._t, self._times = now, times
        taken = int(self.last_others + 0.49)  # round half down
        want = min(self.max_threads, max(1, self.max_threads - taken))
        if want == self.threads:
            return None
        self.threads = want
        self.set_threads(want)
        return want


# ---- the C heap (glibc) ----------------------------------------------------------------------
# Measured (issue 22): 8 concurrent decodes of 600 s of 8-channel 48 kHz audio left 35 MB in
# glibc's per-thread arenas after they ended; malloc_trim alone brought it to 13 MB; a fixed
# mmap threshold (large buffers mapped and unmapped, never parked in an arena) plus malloc_trim,
# to 2-4 MB. glibc raises the threshold by itself after each large free (up to 32 MB), which is
# what lets decode-sized buffers stay behind; setting it fixes it.

M_MMAP_THRESHOLD = -3  # mallopt parameter (malloc.h)
MMAP_THRESHOLD_BYTES = 256 * 1024


@functools.cache
def _libc():
    import ctypes
    import ctypes.util

    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
    except OSError:
        return None
    # glibc only (musl, macOS: neither)
    return libc if hasattr(libc, "mallopt") and hasattr(libc, "malloc_trim") else None


def pin_mmap_threshold(nbytes: int = MMAP_THRESHOLD_BYTES) -> bool:
    """Allocations of `nbytes` or more are mmapped and returned to the system when freed
    (glibc's mallopt M_MMAP_THRESHOLD; setting it also stops glibc raising it). For a long-lived
    process that decodes many files (the server). False where there is no glibc."""
    libc = _libc()
    return bool(libc and libc.mallopt(M_MMAP_THRESHOLD, nbytes) == 1)


def trim_heap() -> bool:
    """Give the C heap's free pages back to the system (glibc malloc_trim, all arenas); False
    where there is no glibc or nothing was released."""
    libc = _libc()
    return bool(libc and libc.malloc_trim(0))


def memory_status() -> tuple[int, int] | None:
    """(resident bytes now, peak resident bytes) of this process, from /proc/self/status;
    None elsewhere."""
    try:
        with open("/proc/self/status") as f:
            kb = {line.split(":")[0]: int(line.split()[1]) for line in f
                  if line.startswith(("VmRSS:", "VmHWM:"))}
        return kb["VmRSS"] * 1024, kb["VmHWM"] * 1024
    except (OSError, KeyError, ValueError, IndexError):
        return None


def reset_peak_memory() -> bool:
    """Reset this process's peak resident size to the current one (Linux: /proc/self/clear_refs
    "5"), so that the next `memory_status` peak measures what runs in between."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False
