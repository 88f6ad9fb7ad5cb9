"""Shared pytest setup: quiet TF logs, oneDNN kernels as in the product, sane CPU threads on
2-core CI, ``--run-large`` opt-in."""

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("KERAS_BACKEND", "tensorflow")

from slowfast_tf.utils import tf_startup  # noqa: E402

# As the entry points do: TF's oneDNN CPU kernels on x86-64 (subprocesses inherit the variable).
tf_startup.prefer_onednn()

import pytest  # noqa: E402

# Fixtures shared by the serving tests and the local-server tests (one tiny export per session).
pytest_plugins = ("slowfast_tf.testing.serving_fixtures",)


def pytest_addoption(parser):
    parser.addoption(
        "--run-large", action="store_true", default=False, help="run tests marked large"
    )


def pytest_collection_modifyitems(config, items):
    if config.getoption("--run-large"):
        return
    skip_large = pytest.mark.skip(reason="large test: pass --run-large to run it")
    for item in items:
        if "large" in item.keywords:
            item.add_marker(skip_large)
