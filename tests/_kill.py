"""Killing a running index process once it has saved some chunks."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path

import pytest


def kill_after_chunks(proc: subprocess.Popen, partial: Path, chunks: int, timeout: float) -> int:
    """SIGKILL ``proc`` as soon as ``partial`` holds ``chunks`` chunk files; returns how many
    it holds after the kill. Fails the test if the process ends first or the time runs out."""
    deadline = time.time() + timeout
    while time.time() < deadline and len(list(partial.glob("chunk-*.npz"))) < chunks:
        if proc.poll() is not None:
            pytest.fail(f"the run ended before it could be killed: {proc.stderr.read()[-2000:]}")
        time.sleep(0.05)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    return len(list(partial.glob("chunk-*.npz")))
