"""Shared pytest configuration: markers, the CUDA skip for ``@pytest.mark.gpu`` tests, and the end of tests/model's
session-wide models and transcripts (``tests/model/_reference.py``)."""
import sys
from pathlib import Path

import pytest
import torch

MODEL_TESTS = Path(__file__).resolve().parent / "model"


def pytest_configure(config):
    config.addinivalue_line("markers", "gpu: needs a CUDA device (skipped when torch.cuda.is_available() is false)")


def pytest_collection_modifyitems(config, items):
    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="needs CUDA: torch.cuda.is_available() is false")
    for item in items:
        if item.get_closest_marker("gpu") is not None:
            item.add_marker(skip)


def pytest_runtest_teardown(item, nextitem):
    """After the last test of tests/model (the next one is elsewhere, or none): free the models and transcripts
    that its files shared, so that the rest of the session does not hold them."""
    if MODEL_TESTS not in Path(item.path).parents:
        return
    if nextitem is not None and MODEL_TESTS in Path(nextitem.path).parents:
        return
    reference = sys.modules.get("_reference")
    if reference is not None and hasattr(reference, "free"):
        reference.free()
