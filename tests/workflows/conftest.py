"""What the workflow tests that drive the real `pyflyte run` command share: a fresh user's
environment and the command itself."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PYFLYTE = str(Path(sys.executable).with_name("pyflyte"))


@pytest.fixture
def sandbox(tmp_path):
    """Environment of a fresh user: own HOME, CINESYNC_HOME and TMPDIR; local cache on."""
    return sandbox_env(tmp_path)


def sandbox_env(tmp_path: Path) -> dict:
    """``sandbox``'s environment in ``tmp_path`` (for a module-scoped fixture)."""
    home, tmp = tmp_path / "home", tmp_path / "tmp"
    home.mkdir()
    tmp.mkdir()
    env = {
        **os.environ,
        "HOME": str(home),
        "CINESYNC_HOME": str(tmp_path / "cinesync"),
        "TMPDIR": str(tmp),
        "FLYTE_LOCAL_CACHE_ENABLED": "true",
        "GX_ANALYTICS_ENABLED": "false",
        "MLFLOW_TRACKING_URI": f"sqlite:///{tmp_path / 'mlflow.db'}",
    }
    return env


def pyflyte(env: dict, workflow: str, *args: str, timeout: float = 240, script: str = "workflows/full.py") -> subprocess.CompletedProcess:
    return subprocess.run(
        [PYFLYTE, "run", script, workflow, *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def output(run: subprocess.CompletedProcess) -> str:
    return run.stdout + run.stderr
