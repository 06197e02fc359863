import os

import pytest

# Keep thread pools small: CI has 2 cores and tests run numerics in several libraries at once.
os.environ.setdefault("OMP_NUM_THREADS", "2")


def pytest_configure(config):
    config.addinivalue_line("markers", "corpus: reads ../shared/corpus; skipped where it is not there (a clone "
                                       "without ../shared)")


def pytest_collection_modifyitems(config, items):
    """The one place that finds out whether ../shared/corpus is there: tests marked `corpus` skip without it."""
    from support import CORPUS
    if (CORPUS / "MANIFEST.tsv").exists():
        return
    skip = pytest.mark.skip(reason="../shared/corpus is not there")
    for item in items:
        if item.get_closest_marker("corpus"):
            item.add_marker(skip)
