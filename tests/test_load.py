"""Twenty sellers at once against a real server: the short variant of benchmarks/load_test.py.

The long run, with figures, is `.venv/bin/python benchmarks/load_test.py` (BENCHMARKS.md)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "benchmarks"))

from load_test import run_load_test  # noqa: E402

SESSIONS = 20


@pytest.mark.timeout(900)
def test_twenty_simultaneous_sessions_lose_nothing(tmp_path):
    report = run_load_test(tmp_path, sessions=SESSIONS, photos=1, megapixels=0.5)
    assert report["problems"] == [], report["problems"]
    assert report["photos_done"] == SESSIONS
