"""Shared fixtures."""
from __future__ import annotations

import os

from hypothesis import settings

# Lowered schedules are not read from or written to the on-disk store (sim/studies/schedule_store.py): a test that
# changes a module's constants must lower anew. tests/test_schedule_store.py turns it on where it is tested.
os.environ["TILESIM_SCHEDULE_CACHE"] = "0"

# Property tests draw the same examples on every run (CI must not flake); TILESIM_HYPOTHESIS_RANDOM=1 explores anew.
settings.register_profile("tilesim", derandomize=not os.environ.get("TILESIM_HYPOTHESIS_RANDOM"), deadline=None,
                          print_blob=True)
settings.load_profile("tilesim")


def pytest_terminal_summary(terminalreporter):
    """One line on the bad-input catalogue: how many cases ran and passed (issue 12)."""
    reports = [r for key in ("passed", "failed") for r in terminalreporter.stats.get(key, [])
               if getattr(r, "when", "") == "call" and "test_bad_input[" in r.nodeid]
    if reports:
        passed = sum(r.passed for r in reports)
        terminalreporter.write_line(f"bad-input catalogue: {len(reports)} cases tried, {passed} exited 2 with one "
                                    "line and left no file")
