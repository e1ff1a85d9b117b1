"""Jinja2 for HTML pages: one environment per domain package, autoescape always on."""

from __future__ import annotations

import functools
from typing import Any

from jinja2 import Environment, PackageLoader, StrictUndefined


@functools.cache
def environment(package: str) -> Environment:
    """Templates from ``<package>/templates``; a missing variable is an error, not a blank."""
    return Environment(
        loader=PackageLoader(package, "templates"),
        autoescape=True,
        undefined=StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )


def render(package: str, name: str, **context: Any) -> str:
    return environment(package).get_template(name).render(**context)
