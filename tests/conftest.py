"""Shared pytest configuration: the ``gpu``, ``slow`` and ``e2e`` markers, and the test process's
CPU threads (as many as the cores other processes leave free: a suite run beside other work does
not spin its OpenMP threads against them, training/cpu_threads.py)."""

from __future__ import annotations

import pytest
import torch


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption("--run-slow", action="store_true", default=False, help="also run tests marked slow")
    parser.addoption("--run-e2e", action="store_true", default=False,
                     help="also run the end-to-end tests (several processes, whole training runs, the docs walk); "
                          ".ci/run does")


def pytest_configure(config: pytest.Config) -> None:
    from training.cpu_threads import set_threads_for_load

    set_threads_for_load()


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    skip_gpu = pytest.mark.skip(reason="needs a CUDA device (none present)")
    skip_slow = pytest.mark.skip(reason="slow: run with --run-slow")
    skip_e2e = pytest.mark.skip(reason="end-to-end: run with --run-e2e (.ci/run does)")
    for item in items:
        if "gpu" in item.keywords and not torch.cuda.is_available():
            item.add_marker(skip_gpu)
        if "slow" in item.keywords and not config.getoption("--run-slow"):
            item.add_marker(skip_slow)
        if "e2e" in item.keywords and not config.getoption("--run-e2e"):
            item.add_marker(skip_e2e)
