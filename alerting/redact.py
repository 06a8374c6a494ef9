"""Keeping receiver secrets out of log lines that apprise and urllib3 write themselves.

apprise masks the secrets it knows about in the names it prints (`json://user:****@host`), and
our notifiers use those names. But at DEBUG level apprise logs URLs with custom headers
(`json://host/hook?+X-Token=SECRET`) and urllib3 logs the request path, where webhook services
keep their tokens (`/services/T000/B000/XXXX`). So every notifier registers the parts of its
URL that apprise hides, and header values, with one filter on those libraries' loggers, which
replaces them by `****` in each record before any handler (or apprise's own capture, from
which delivery errors are taken) sees it.

>>> sorted(url_secrets("json://bob:pw1234@host:9/hook?+X-Token=abcd1234",
...                    "json://bob:****@host:9/hook?+X-Token=abcd1234"))
['abcd1234', 'pw1234']
>>> redact("POST /hook?tok=abcd1234 failed", {"abcd1234"})
'POST /hook?tok=**** failed'
"""

from __future__ import annotations

import logging
import re
import threading
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from urllib.parse import parse_qsl, quote, unquote, urlsplit

__all__ = [
    "SecretFilter",
    "masking_every_part_of",
    "redact",
    "register_secrets",
    "url_secrets",
]

#: Loggers of the libraries that write receiver URLs and request paths on their own.
LOGGERS = ("apprise", "urllib3.connectionpool", "urllib3.connection", "requests")

#: Shorter pieces are not treated as secrets (they would mask ordinary words).
MIN_SECRET_CHARS = 4

_SPLIT = re.compile(r"[/:@?&=#,;+]+")


def url_secrets(url: str, masked: str = "") -> set[str]:
    """The parts of `url` a log line must not show: the password, the values of header
    options (`+Name`, which apprise does not mask) and, given apprise's privacy form
    `masked`, what that hides (tokens in the host, path or query)."""
    parts, shown_parts = urlsplit(url), urlsplit(masked or url)
    secrets: set[str] = set()
    if parts.password:
        secrets.add(unquote(parts.password))
    shown_query = dict(parse_qsl(shown_parts.query))
    for key, value in parse_qsl(parts.query):
        # `+Name` (a header) reads back as " Name": parse_qsl decodes "+" as a space.
        if key.startswith(("+", " ")) or (key in shown_query and shown_query[key] != value):
            secrets.add(value)
    shown = set(_SPLIT.split(unquote(shown_parts.netloc + shown_parts.path)))
    for piece in _SPLIT.split(unquote(parts.netloc + parts.path)):
        if piece not in shown:
            secrets.add(piece)
    return {s for s in secrets if len(s) >= MIN_SECRET_CHARS}


def redact(text: str, secrets: Iterable[str]) -> str:
    """`text` with every secret (as written, or URL-quoted) replaced by `****`."""
    for secret in sorted(secrets, key=len, reverse=True):
        for form in {secret, quote(secret, safe=""), quote(secret)}:
            if form in text:
                text = text.replace(form, "****")
    return text


class SecretFilter(logging.Filter):
    """Rewrites a record's message with the registered secrets masked; never drops one."""

    def __init__(self) -> None:
        super().__init__()
        self._lock = threading.Lock()
        self._secrets: frozenset[str] = frozenset()

    def add(self, secrets: Iterable[str]) -> None:
        with self._lock:
            self._secrets = self._secrets | frozenset(secrets)

    @contextmanager
    def also_masking(self, secrets: Iterable[str]) -> Iterator[None]:
        """Mask `secrets` too, until the block ends (for one call that may log them)."""
        extra = frozenset(secrets) - self._secrets
        with self._lock:
            self._secrets = self._secrets | extra
        try:
            yield
        finally:
            with self._lock:
                self._secrets = self._secrets - extra

    def filter(self, record: logging.LogRecord) -> bool:
        secrets = self._secrets
        if not secrets:
            return True
        try:
            message = record.getMessage()
        except Exception:  # a broken record is the logging system's to report
            return True
        cleaned = redact(message, secrets)
        if cleaned != message:
            record.msg, record.args = cleaned, ()
        return True


_FILTER = SecretFilter()
_installed = False
_install_lock = threading.Lock()


def register_secrets(secrets: Iterable[str]) -> None:
    """Mask `secrets` in everything apprise and urllib3 log from now on in this process."""
    global _installed
    _FILTER.add(secrets)
    with _install_lock:
        if not _installed:
            for name in LOGGERS:
                logging.getLogger(name).addFilter(_FILTER)
            _installed = True


def url_parts(url: str) -> set[str]:
    """Every piece of `url` after its scheme that could be a secret: host, user, password,
    path segments and query values (a URL apprise cannot parse gives no hint which it is).

    >>> sorted(url_parts("slack://T1a2b3/B4c5d6/xoxb-secret?footer=no"))
    ['B4c5d6', 'T1a2b3', 'xoxb-secret']
    """
    parts = urlsplit(url if "://" in url else f"x://{url}")
    pieces = set(_SPLIT.split(unquote(parts.netloc + parts.path)))
    pieces |= {value for _, value in parse_qsl(parts.query)}
    return {p for p in pieces if len(p) >= MIN_SECRET_CHARS}


@contextmanager
def masking_every_part_of(url: str) -> Iterator[None]:
    """While apprise parses `url`: it may warn about a malformed token, quoting it in full,
    before anything says which part is secret; so every part is masked for that moment."""
    register_secrets(())  # installs the filter on the libraries' loggers
    with _FILTER.also_masking(url_parts(url)):
        yield
