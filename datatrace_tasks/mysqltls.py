"""pymysql connections that build the TLS context of pymysql's PREFERRED mode once.

A pymysql 2.2 connection with no TLS option still tries TLS (PREFERRED mode: used if
the server offers it, skipped if not), and builds a new `ssl.create_default_context()`
for it every time, loading the system's certificates: measured here, 24 ms a
connection against 0.6 ms without. A run opens dozens of connections (a reader and
a writer per key range, the catalog, verification, the store). That context never
varies (no CA, no hostname check, CERT_NONE), and an SSLContext is meant to be
shared, so it is built once per process. TLS is negotiated exactly as before;
explicit TLS options (`ssl_ca`, ...) still get a context of their own.
"""

from __future__ import annotations

import ssl
import threading
from typing import Any, ClassVar

from pymysql.connections import Connection
from sqlalchemy import Engine, event


class SharedTlsConnection(Connection):  # type: ignore[misc]
    """A pymysql connection whose PREFERRED-mode TLS context is the process's one."""

    _preferred: ClassVar[ssl.SSLContext | None] = None
    _building: ClassVar[threading.Lock] = threading.Lock()

    def _create_ssl_ctx(self, sslp: Any) -> ssl.SSLContext:
        if not isinstance(sslp, dict) or sslp:  # options of the caller's own
            return super()._create_ssl_ctx(sslp)  # type: ignore[no-any-return]
        with SharedTlsConnection._building:
            if SharedTlsConnection._preferred is None:
                SharedTlsConnection._preferred = super()._create_ssl_ctx({})
            return SharedTlsConnection._preferred


def connect_with_shared_tls(
    engine: Engine, connection_class: type[SharedTlsConnection] = SharedTlsConnection
) -> None:
    """Make a pymysql engine open its connections as `connection_class` (a subclass of
    `SharedTlsConnection` adds behaviour, as the target's guarded one does)."""

    @event.listens_for(engine, "do_connect")
    def _connect(_dialect: Any, _record: Any, cargs: Any, cparams: Any) -> Any:
        return connection_class(*cargs, **cparams)
