"""Shared pytest set-up.

GPU: tests marked ``gpu`` need CUDA and are skipped without it (benchmarks/gpu_check.sh runs
them on a GPU machine). SLURM: tests marked ``slurm`` need a running cluster. They are skipped when ``sinfo`` is
missing or ``scontrol ping`` fails, and FAIL instead when ``REQUIRE_SLURM=1`` (CI brings a
cluster up with .ci/slurm-up.sh, so a broken cluster cannot hide as "skipped").
"""

import functools
import os
import shutil
import subprocess

import pytest

# shared fixtures: the fake download server, a tiny trained sweep, tiny image-folder runs
pytest_plugins = ["tests.fixtures.http", "tests.fixtures.runs", "tests.fixtures.model_runs"]


@functools.lru_cache(maxsize=1)
def slurm_unavailable_reason() -> str:
    """Empty when a SLURM controller answers here, else why not."""
    if shutil.which("sinfo") is None:
        return "`sinfo` is not on PATH"
    try:
        ping = subprocess.run(["scontrol", "ping"], capture_output=True, text=True, timeout=20)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return f"`scontrol ping` failed: {exc}"
    if ping.returncode != 0 or "UP" not in ping.stdout:
        said = [l.strip() for l in (ping.stdout + ping.stderr).splitlines() if l.strip()]
        return f"`scontrol ping` says: {said[0] if said else ping.returncode}"
    return ""


def pytest_runtest_setup(item):
    if item.get_closest_marker("gpu") is not None:
        import torch
        if not torch.cuda.is_available():  # CI machines have none; benchmarks/gpu_check.sh
            pytest.skip("no CUDA GPU here (run benchmarks/gpu_check.sh on a GPU machine)")
    if item.get_closest_marker("slurm") is not None:
        reason = slurm_unavailable_reason()
        if reason:
            if os.environ.get("REQUIRE_SLURM") == "1":
                pytest.fail(f"REQUIRE_SLURM=1 but no SLURM cluster: {reason} "
                            "(start one with: bash .ci/slurm-up.sh)", pytrace=False)
            pytest.skip(f"no SLURM cluster: {reason}")


@pytest.fixture
def one_thread():
    """Tiny models on a small CPU: more torch threads only add contention."""
    import torch
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
