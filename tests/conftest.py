import inspect
import os

import pytest

# Keep thread pools small: CI has 2 cores and tests run numerics in several libraries at once.
os.environ.setdefault("OMP_NUM_THREADS", "2")


def _reads_corpus(function) -> bool:
    try:
        return "CORPUS" in inspect.getsource(function)
    except (OSError, TypeError):
        return False


def pytest_collection_modifyitems(config, items):
    """Tests that read ../shared/corpus skip cleanly where it is not there (a clone without ../shared)."""
    from support import CORPUS
    if CORPUS.exists():
        return
    skip = pytest.mark.skip(reason="../shared/corpus is not there")
    for item in items:
        function = getattr(item, "function", None)
        fixtures = getattr(item, "_fixtureinfo", None)
        definitions = [d for name in (fixtures.names_closure if fixtures else ())
                       for d in fixtures.name2fixturedefs.get(name, ())]
        if (function is not None and _reads_corpus(function)) or any(_reads_corpus(d.func) for d in definitions):
            item.add_marker(skip)
