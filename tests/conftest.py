"""Shared fixtures."""
from __future__ import annotations

import os

import pytest
from hypothesis import settings

# Property tests draw the same examples on every run (CI must not flake); TILESIM_HYPOTHESIS_RANDOM=1 explores anew.
settings.register_profile("tilesim", derandomize=not os.environ.get("TILESIM_HYPOTHESIS_RANDOM"), deadline=None,
                          print_blob=True)
settings.load_profile("tilesim")

from archs import tiny_arch


@pytest.fixture
def arch16():
    return tiny_arch()
