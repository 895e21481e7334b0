"""A job's per-table settings applied to the source catalog: which rows and columns of
a table are copied, and under which name they land (the job file's `table_settings`).

A table with settings is the catalog's table narrowed: fewer columns, a row filter,
another target name. Every reader, writer and check takes the narrowed table, so one
rule holds on every path: what the job copies is what verification compares.
"""

from __future__ import annotations

import dataclasses

from sqlalchemy.engine import Engine
from sqlalchemy.exc import DBAPIError

from datatrace_tasks.exceptions import ConfigError
from datatrace_tasks.sync.catalog import SourceTable, resolve_tables
from datatrace_tasks.sync.job import Job
from datatrace_tasks.sync.rawsql import source_rows


def _columns(table: SourceTable, job: Job) -> tuple[str, ...] | None:
    """The names of the columns to copy, or None for all of them.

    Raises:
        ConfigError: a column named is not in the table, or the key is left out.
    """
    settings = job.table_settings[table.name]
    asked = settings.columns or settings.exclude_columns
    if asked is None:
        return None
    names = [col.name for col in table.columns]
    unknown = [name for name in asked if name not in names]
    where = f"table_settings.{table.name}"
    if unknown:
        listed = ", ".join(map(repr, unknown))
        raise ConfigError(f"{where}: no column {listed} in source table {table.name!r}")
    if settings.exclude_columns is not None:
        keyed = [name for name in settings.exclude_columns if name in table.key]
        if keyed:
            raise ConfigError(
                f"{where}: column {keyed[0]!r} is part of the key ({table.key_origin}), which"
                " every copy needs"
            )
        return tuple(name for name in names if name not in settings.exclude_columns)
    keep = set(asked) | set(table.key)  # the key always: it orders and resumes the copy
    return tuple(name for name in names if name in keep)


def narrowed(table: SourceTable, job: Job) -> SourceTable:
    """`table` as `job` copies it: its settings' columns, row filter and target name.

    Raises:
        ConfigError: the settings name a column the table does not have, or leave out
            the key.
    """
    settings = job.table_settings.get(table.name)
    if settings is None:
        return table
    chosen = _columns(table, job)
    columns = table.columns
    if chosen is not None:
        columns = tuple(col for col in table.columns if col.name in chosen)
    return dataclasses.replace(
        table, columns=columns, row_filter=settings.where, target_name=settings.target
    )


def job_tables(catalog: dict[str, SourceTable], job: Job) -> list[SourceTable]:
    """The tables `job` copies, in catalog order, each narrowed by its settings.

    Raises:
        TableNotFound: a table the job names is not in the source schema.
        ConfigError: `table_settings` names a table the job does not copy, bad
            columns, or two tables that would land in one target table.
    """
    chosen = resolve_tables(catalog, job.tables, job.include, job.exclude)
    names = {table.name for table in chosen}
    stray = [name for name in job.table_settings if name not in names]
    if stray:
        raise ConfigError(
            f"table_settings names {', '.join(map(repr, stray))}, which the job does not"
            " copy (see tables, include and exclude)"
        )
    tables = [narrowed(table, job) for table in chosen]
    landing: dict[str, str] = {}
    for table in tables:
        if table.target in landing:
            raise ConfigError(
                f"tables {landing[table.target]!r} and {table.name!r} would both be copied"
                f" to target table {table.target!r}"
            )
        landing[table.target] = table.name
    return tables


def check_row_filter(source: Engine, table: SourceTable) -> None:
    """Let the source server read the table's row filter once, matching no row, so a
    typo fails before any row is written.

    Raises:
        ConfigError: the source refuses the condition (its message says why).
    """
    if table.row_filter is None:
        return
    rows = source_rows(source, table.name, table.row_filter)
    try:
        with source.connect() as conn:
            conn.exec_driver_sql(f"SELECT 1 FROM {rows} LIMIT 0", ()).all()  # noqa: S608
    except DBAPIError as exc:
        reason = str(exc.orig or exc).strip().splitlines()[0]
        raise ConfigError(
            f"table_settings.{table.name}.where: the source cannot run it: {reason}"
        ) from None
