"""pymysql's PREFERRED-mode TLS context is built once per process (`mysqltls.py`)."""

from __future__ import annotations

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import URL

from datatrace_tasks.mysqltls import SharedTlsConnection
from datatrace_tasks.state.engine import make_engine
from datatrace_tasks.sync.engines import create
from datatrace_tasks.sync.infile import GuardedConnection


def test_connections_without_tls_options_share_one_context_and_still_prefer_tls() -> None:
    """Two connections with no TLS option get the same context, and still try TLS
    without requiring it (PREFERRED, as pymysql does); one with a CA of its own gets
    its own context and requires TLS."""
    first = SharedTlsConnection(host="127.0.0.1", defer_connect=True)
    second = GuardedConnection(host="127.0.0.1", defer_connect=True)
    assert first.ctx is second.ctx
    assert first.ssl and not first._ssl_required
    own = SharedTlsConnection(
        host="127.0.0.1", ssl_ca="/etc/ssl/certs/ca-certificates.crt", defer_connect=True
    )
    assert own.ctx is not first.ctx
    assert own._ssl_required


@pytest.mark.mysql
def test_every_engine_of_a_run_opens_shared_tls_connections(mysql_server: URL) -> None:
    """Source, target and state-store engines on MariaDB open connections of the
    shared-context kind (the target's guarded for LOAD DATA), and they work."""
    engines = {
        "source": create(mysql_server, role="source"),
        "target": create(mysql_server, role="target"),
        "store": make_engine(mysql_server.render_as_string(hide_password=False)),
    }
    kinds = {"source": SharedTlsConnection, "target": GuardedConnection}
    for name, engine in engines.items():
        with engine.connect() as conn:
            assert conn.execute(sa.text("SELECT 1")).scalar_one() == 1
            raw = conn.connection.dbapi_connection
            assert type(raw) is kinds.get(name, SharedTlsConnection)
        engine.dispose()
