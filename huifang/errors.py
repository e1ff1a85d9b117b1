"""Errors that services raise and the HTTP edge turns into 4xx answers.

Every one carries a sentence a person can act on; the edge never invents wording.
"""

from __future__ import annotations


class HuifangError(Exception):
    """A refusal with an HTTP status and a human sentence."""

    status_code = 400

    def __init__(self, detail: str) -> None:
        super().__init__(detail)
        self.detail = detail


class NotFound(HuifangError):
    """The object does not exist for this tenant (other tenants' objects look the same)."""

    status_code = 404


class Invalid(HuifangError):
    """The request is well-formed but its content cannot be accepted."""

    status_code = 422


class Conflict(HuifangError):
    """The request clashes with the current state of a record."""

    status_code = 409


class TooLarge(HuifangError):
    status_code = 413


class UnsupportedType(HuifangError):
    status_code = 415
