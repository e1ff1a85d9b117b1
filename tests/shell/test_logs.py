"""The service's log configuration (huifang.logs.configure_logging)."""

from __future__ import annotations

import logging
from collections.abc import Iterator

import pytest
from PIL import Image

from huifang.logs import configure_logging
from media import renditions


class _Kept(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.NOTSET)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


@pytest.fixture
def configured() -> Iterator[object]:
    """``configure_logging`` at a level, with what reaches the root's handlers kept; the
    logging set-up as it was afterwards."""
    root, vips = logging.getLogger(), logging.getLogger("pyvips")
    handlers, level, vips_level = root.handlers[:], root.level, vips.level
    kept = _Kept()

    def configure(level: str) -> _Kept:
        configure_logging(level=level)
        root.addHandler(kept)
        return kept

    yield configure
    root.handlers[:] = handlers
    root.setLevel(level)
    vips.setLevel(vips_level)


def _resize() -> None:
    renditions.fit(Image.effect_noise((1600, 1200), 40).convert("RGB"), 1000)  # by libvips


def test_libvips_notes_stay_out_of_the_log_at_info(configured):
    kept = configured("INFO")
    _resize()
    assert [r.getMessage() for r in kept.records if r.name == "pyvips"] == []
    logging.getLogger("pyvips").warning("VIPS: a warning")  # warnings still come through
    assert [r.getMessage() for r in kept.records] == ["VIPS: a warning"]


def test_libvips_notes_show_at_debug(configured):
    kept = configured("DEBUG")
    _resize()
    assert any(r.getMessage().startswith("VIPS:") for r in kept.records if r.name == "pyvips")
