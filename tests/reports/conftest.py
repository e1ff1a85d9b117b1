"""Fixtures for report tests: the media tests' visit."""

from __future__ import annotations

from tests.media.conftest import visit  # noqa: F401  (the same visit fixture as the media tests)
