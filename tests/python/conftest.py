"""Every test here runs the binary: without it the suite fails at once instead of skipping."""
import os

import pytest


def pytest_configure(config):
    if not os.environ.get("SLAF_CONVERT_BIN"):
        raise pytest.UsageError(
            "SLAF_CONVERT_BIN is not set: run ./scripts/test.sh, or point it at a slaf-convert binary")
