"""The dashboard's password: hashed by the launcher, checked by the app.

The launcher (the CLI) reads the password from the environment and writes only a salted
scrypt hash to a file readable by the user alone; the app gets that file's path as an argument.
So the password itself is never on a command line (visible to `ps`), never in the app's
environment, and nothing is read at import time. Standard library only: the CLI imports this.

>>> stored = hash_password("correct horse")
>>> verify_password("correct horse", stored), verify_password("wrong", stored)
(True, False)
>>> is_loopback("127.0.0.1"), is_loopback("localhost"), is_loopback("0.0.0.0")
(True, True, False)
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import ipaddress
import os
import secrets
from pathlib import Path

__all__ = ["hash_password", "is_loopback", "read_auth_file", "verify_password", "write_auth_file"]

PASSWORD_ENV = "WATCHKEEPER_DASHBOARD_PASSWORD"
"""The environment variable the CLI reads the dashboard password from."""

_N, _R, _P = 2**14, 8, 1  # scrypt cost: ~16 MiB and a few tens of ms per check


def is_loopback(host: str) -> bool:
    """True when `host` only accepts connections from this machine."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def _scrypt(password: str, salt: bytes) -> bytes:
    return hashlib.scrypt(password.encode("utf-8"), salt=salt, n=_N, r=_R, p=_P, dklen=32)


def hash_password(password: str) -> str:
    """`scrypt$<salt>$<hash>` (base64) for `password`, with a fresh random salt."""
    salt = secrets.token_bytes(16)
    encode = base64.b64encode
    return f"scrypt${encode(salt).decode()}${encode(_scrypt(password, salt)).decode()}"


def verify_password(password: str, stored: str) -> bool:
    """Whether `password` matches a `hash_password` result (constant-time comparison)."""
    try:
        scheme, salt, digest = stored.strip().split("$")
        if scheme != "scrypt":
            return False
        expected = base64.b64decode(digest)
        return hmac.compare_digest(_scrypt(password, base64.b64decode(salt)), expected)
    except ValueError:
        return False


def write_auth_file(path: Path, password: str) -> Path:
    """Write the hash of `password` to `path`, readable and writable by the owner only."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as out:
        out.write(hash_password(password) + "\n")
    return path


def read_auth_file(path: Path) -> str:
    """The stored hash; raises `OSError` if the file cannot be read, `ValueError` if empty."""
    stored = Path(path).read_text(encoding="utf-8").strip()
    if not stored:
        raise ValueError(f"{path}: empty password file")
    return stored
