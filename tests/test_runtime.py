"""Threading set-up: passive OpenMP waiting and one NumPy BLAS thread, before torch loads."""

import os
import subprocess
import sys

from asrlab.runtime import THREAD_ENV_DEFAULTS, default_threads, physical_cores

PROBE = ("import os, asrlab, torch; "
         "print(os.environ['OMP_WAIT_POLICY'], os.environ['OPENBLAS_NUM_THREADS'])")


def run_probe(env_extra: dict) -> str:
    env = {k: v for k, v in os.environ.items() if k not in THREAD_ENV_DEFAULTS}
    env.update(env_extra)
    return subprocess.run([sys.executable, "-c", PROBE], env=env, capture_output=True,
                          text=True, check=True).stdout.split()


def test_importing_asrlab_sets_the_thread_environment():
    assert run_probe({}) == ["PASSIVE", "1"]


def test_a_value_the_user_set_is_kept():
    assert run_probe({"OMP_WAIT_POLICY": "ACTIVE", "OPENBLAS_NUM_THREADS": "4"}) == ["ACTIVE", "4"]


def test_default_threads_are_the_physical_cores_unless_requested():
    cores = physical_cores()
    assert 1 <= cores <= len(os.sched_getaffinity(0))
    assert default_threads(None) == cores
    assert default_threads(3) == 3
    assert default_threads(None, processes=cores) == 1  # torchrun: the cores are shared
    assert default_threads(None, processes=4 * cores) == 1
