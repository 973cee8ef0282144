"""Process-wide CPU threading, set before torch or NumPy load their thread pools.

Two settings keep training and inference fast on a shared CPU (a laptop, a CI box):

- ``OMP_WAIT_POLICY=PASSIVE``: OpenMP threads sleep at barriers instead of spinning. With an
  active (spinning) policy, one preempted thread stalls every other at each barrier; measured on
  a 2-core machine with one competing busy process, training fell from 69 to 4-16 audio-s/s with
  spinning and held 44 with passive waiting (docs/benchmarks.md).
- ``OPENBLAS_NUM_THREADS=1``: NumPy's BLAS (the mel filterbank matmul) runs on the calling thread,
  so its spinning workers do not take cores from torch's.

Both are read once, when the libraries initialise, so this module is imported by
``asrlab/__init__.py`` before anything imports torch or NumPy. A value the user has already set
in the environment is kept.
"""

from __future__ import annotations

import functools
import os

THREAD_ENV_DEFAULTS = {"OMP_WAIT_POLICY": "PASSIVE", "OPENBLAS_NUM_THREADS": "1"}


def set_thread_env() -> dict[str, str]:
    """Apply THREAD_ENV_DEFAULTS where unset; returns the values now in force."""
    for key, value in THREAD_ENV_DEFAULTS.items():
        os.environ.setdefault(key, value)
    return {key: os.environ[key] for key in THREAD_ENV_DEFAULTS}


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
