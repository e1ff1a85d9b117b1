"""Password hashing: Argon2id through pwdlib, with its recommended parameters."""

from __future__ import annotations

import functools

from pwdlib import PasswordHash

MIN_LENGTH = 8
MAX_LENGTH = 128  # Argon2 takes any length; a bound keeps a megabyte "password" out


@functools.cache
def _hasher() -> PasswordHash:
    return PasswordHash.recommended()


def hash_password(password: str) -> str:
    return _hasher().hash(password)


def verify(password: str, password_hash: str | None) -> bool:
    """Whether ``password`` matches; a user with no password yet matches nothing. Without a
    hash, a dummy one is checked all the same, so that the time taken does not tell."""
    if password_hash is None:
        _hasher().verify(password, _dummy_hash())
        return False
    return bool(_hasher().verify(password, password_hash))


@functools.cache
def _dummy_hash() -> str:
    return _hasher().hash("not a password of anyone's")
