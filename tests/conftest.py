"""Shared fixtures. Area-specific helpers live in their own ``tests/*_helpers.py`` modules."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

# Fixtures several modules use, made available to all (session-scoped ones are built once).
from tests.paper_import_helpers import paper_run  # noqa: F401
from tests.tiny_model_helpers import tiny_model_dir  # noqa: F401
from tests.tiny_model_helpers import tiny_plain_model_dir  # noqa: F401

MIRROR_VARIABLE = "DISTALIGN_SOURCE"


@pytest.fixture(scope="session")
def mirror_source() -> Path:
    """The upstream mirror directory from ``DISTALIGN_SOURCE``.

    Without it the test is skipped, unless ``DISTALIGN_REQUIRE_MIRROR=1`` (set by
    the test command whenever a source is given, so CI cannot skip these silently).
    """
    value = os.environ.get(MIRROR_VARIABLE)
    if not value or not Path(value).is_dir():
        message = f"{MIRROR_VARIABLE} does not name the upstream mirror directory"
        if os.environ.get("DISTALIGN_REQUIRE_MIRROR") == "1":
            pytest.fail(message)
        pytest.skip(message)
    return Path(value)
