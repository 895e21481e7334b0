"""Database URLs: parsing and masking, so a password never reaches a log or a message."""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

from datatrace_tasks.exceptions import ConfigError, DataTraceError

if TYPE_CHECKING:  # SQLAlchemy is imported only to parse: `mask_text` must stay cheap
    from sqlalchemy.engine import URL

_PASSWORD_IN_URL = re.compile(r"(?P<head>[a-zA-Z][\w+.-]*://[^:/@\s]*:)(?P<pw>[^@\s]*)(?P<at>@)")


def parse_url(url: str | URL) -> URL:
    """Parse a SQLAlchemy URL, with an error that shows it masked."""
    from sqlalchemy.engine import URL, make_url
    from sqlalchemy.exc import ArgumentError

    if isinstance(url, URL):
        return url
    try:
        return make_url(url)
    except (ArgumentError, ValueError) as exc:
        # The text may hold a password in a shape the masker cannot see: never echo it.
        raise ConfigError(
            "not a database URL (expected dialect+driver://user:password@host:port/database)"
        ) from exc


def mask_url(url: str | URL) -> str:
    """`user:***@host:port/db`: the URL as it may be shown anywhere."""
    try:
        return parse_url(url).render_as_string(hide_password=True)
    except ConfigError:
        return mask_text(str(url))


def mask_text(text: str) -> str:
    """Mask any `scheme://user:password@` inside free text (driver messages, tracebacks)."""
    return _PASSWORD_IN_URL.sub(r"\g<head>***\g<at>", text)


def describe(url: str | URL) -> str:
    """`host:port/database` (or the file for SQLite), to name a database in an error."""
    u = parse_url(url)
    if u.get_backend_name() == "sqlite":
        return f"sqlite file {u.database or ':memory:'}"
    where = u.host or "localhost"
    if u.port:
        where += f":{u.port}"
    return f"{u.get_backend_name()} at {where}/{u.database or ''}"


def error_text(error: str | BaseException) -> str:
    """A one-line, password-free message; DataTrace's own errors are already readable."""
    if isinstance(error, DataTraceError):
        return mask_text(str(error))
    if isinstance(error, BaseException):
        return mask_text(f"{type(error).__name__}: {error}".rstrip(": "))
    return mask_text(error)
