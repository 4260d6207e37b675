"""Shared fixtures."""
from __future__ import annotations

import pytest

from archs import tiny_arch


@pytest.fixture
def arch16():
    return tiny_arch()
