"""LOAD DATA LOCAL INFILE without handing the target server the client's files.

With `local_infile` on, the MySQL protocol lets the *server* name the file the
client sends, and pymysql sends whatever it names. A hostile or compromised target
could ask for `~/.ssh/id_rsa` in answer to any statement. DataTrace's connections
send only the spool file the bulk writer has just offered on that connection, and
refuse every other request.
"""

from __future__ import annotations

import os
from typing import Any

import pymysql
from pymysql.connections import MySQLResult
from pymysql.protocol import LoadLocalPacketWrapper

from datatrace_tasks.mysqltls import SharedTlsConnection

# The client error MySQL 8 uses for this: CR_LOAD_DATA_LOCAL_INFILE_REJECTED.
REJECTED = 2068


class _GuardedResult(MySQLResult):  # type: ignore[misc]
    def _read_load_local_packet(self, first_packet: Any) -> None:
        conn = self.connection
        asked = LoadLocalPacketWrapper(first_packet).filename
        offered = getattr(conn, "offered_file", None)
        if offered is None or os.path.realpath(asked) != os.path.realpath(offered):
            conn.write_packet(b"")  # send no data: the server ends the statement
            try:
                conn._read_packet()
            except pymysql.err.MySQLError:
                pass
            raise pymysql.err.OperationalError(
                REJECTED,
                f"the server asked for local file {asked.decode(errors='replace')!r}, "
                "which DataTrace did not offer; refused",
            )
        super()._read_load_local_packet(first_packet)


class GuardedConnection(SharedTlsConnection):
    """A pymysql connection that sends only the file set in `offered_file` (bytes)."""

    offered_file: bytes | None = None

    def _read_query_result(self, unbuffered: bool = False) -> int:
        # pymysql's own, with the guarded result class.
        self._result = None
        result = _GuardedResult(self)
        if unbuffered:
            result.init_unbuffered_query()
        else:
            result.read()
        self._result = result
        if result.server_status is not None:
            self.server_status = result.server_status
        return int(result.affected_rows or 0)


def offer(dbapi_connection: Any, path: str | None) -> None:
    """Let the connection send `path` (None: no file at all) to its server."""
    target = getattr(dbapi_connection, "dbapi_connection", dbapi_connection)
    target.offered_file = None if path is None else os.fsencode(path)
