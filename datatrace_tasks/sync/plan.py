"""`datatrace plan`: what a run would do to each table, without writing anything."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from rich.markup import escape
from rich.table import Table as RichTable

from datatrace_tasks.exceptions import ConfigError, SchemaIncompatible, TableUnsupported
from datatrace_tasks.sync.catalog import SourceTable
from datatrace_tasks.sync.ddl import target_table
from datatrace_tasks.sync.engines import Databases
from datatrace_tasks.sync.finish import index_statements, planned_foreign_keys, sqlite_links
from datatrace_tasks.sync.incremental import cursor_column
from datatrace_tasks.sync.job import Job
from datatrace_tasks.sync.keyless import KEYLESS_NOTE, refusal_keyless_append
from datatrace_tasks.sync.schema import SchemaObjects, read_objects
from datatrace_tasks.sync.tablesettings import check_row_filter, job_tables
from datatrace_tasks.sync.unstorable import refuse_unstorable

AFTER_LOAD_NOTE = (
    "secondary indexes are built after each table's rows, foreign keys once every table"
    " is in (tables are copied in parallel, in any order)"
)


@dataclass
class PlannedUnit:
    """One table of the plan: what a run would do with it."""

    table: str
    estimated_rows: int
    key: list[str]
    key_origin: str
    action: str  # "create", "exists, compatible" or "refused"
    ddl: str | None = None
    warnings: list[str] = field(default_factory=list)
    refusal: str | None = None
    target: str | None = None  # the target table, where its name differs
    mode: str = "full"
    row_filter: str | None = None
    columns: list[str] | None = None  # the columns copied, where not all of them
    indexes: list[str] = field(default_factory=list)  # built after the rows, by target name


@dataclass
class Plan:
    """The dry run of a job: one entry per table, in catalog order."""

    job: str
    source: str  # masked URL
    target: str  # masked URL
    write_mode: str
    units: list[PlannedUnit]
    mode: str = "full"
    notes: list[str] = field(default_factory=list)
    foreign_keys: list[str] = field(default_factory=list)  # added once every table is in

    @property
    def refused(self) -> list[PlannedUnit]:
        """The units a run would refuse."""
        return [u for u in self.units if u.refusal]

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready view (`datatrace plan --json`)."""
        return asdict(self)

    def render(self) -> RichTable:
        """A rich table for the terminal: one row per unit, DDL and caveats below it."""
        # Every name, type and message is data, never markup (a table may be called "[b]").
        out = RichTable(title=escape(f"plan {self.job}: {self.source} -> {self.target}"))
        for header in ("table", "rows (est.)", "key", "action", "details"):
            out.add_column(header, justify="right" if header.startswith("rows") else "left")
        for unit in self.units:
            details = [unit.refusal] if unit.refusal else []
            details += [f"! {w}" for w in unit.warnings]
            if unit.row_filter:
                details.insert(0, f"rows where {unit.row_filter}")
            if unit.columns is not None:
                details.insert(0, f"columns {', '.join(unit.columns)}")
            if unit.indexes:
                details.append(f"indexes after the rows: {', '.join(unit.indexes)}")
            if unit.ddl:
                details.append(unit.ddl)
            name = unit.table if unit.target is None else f"{unit.table} -> {unit.target}"
            out.add_row(
                escape(name),
                f"{unit.estimated_rows:,}",
                escape(", ".join(unit.key)) or "-",
                "[red]refused[/red]" if unit.refusal else escape(unit.action),
                escape("\n".join(details)),
            )
        if self.notes or self.foreign_keys:
            out.caption = escape("; ".join([*self.notes, *self.foreign_keys]))
        return out


DIFFERENTIAL_NOTE = (
    "mode differential: each table the target holds is compared with the source key"
    " bucket by bucket, the rows that differ or are missing are written, rows gone from the"
    " source are deleted, then the table is verified; a new table is copied in full"
)


INCREMENTAL_NOTE = (
    "mode incremental (cursor {cursor}, lookback {lookback}): each table the target holds"
    " gets the rows whose {cursor} is at least the last verified run's mark minus the"
    " lookback, upserted, then verified; deletes on the source are not seen (mode"
    " differential sees them), rows with a NULL {cursor} only by a full copy; a new or"
    " empty table, or one with no mark yet, is copied in full"
)


def _mode_action(job: Job, table: SourceTable, unit: PlannedUnit, fresh: bool) -> None:
    """What the job's mode does to this table, or why it refuses it."""
    if not table.key:
        return  # staged whole and swapped in, whatever the mode
    if job.mode == "incremental" and job.cursor is not None:
        try:
            cursor_column(table, job.cursor)
        except TableUnsupported as exc:
            unit.refusal, unit.action = str(exc), "refused"
            return
        if not fresh:
            unit.action += f"; incremental: rows by {job.cursor}"
    elif job.mode == "differential" and not fresh:
        unit.action += "; differential: only rows that differ are written"


def _plan_unit(
    dbs: Databases, job: Job, table: SourceTable, objects: SchemaObjects, *, probe: bool
) -> PlannedUnit:
    """What a run of `job` (as this table runs it) would do with `table`."""
    everything = dbs.catalog()[table.name].columns
    unit = PlannedUnit(
        table=table.name,
        estimated_rows=table.estimated_rows,
        key=list(table.key),
        key_origin=table.key_origin,
        action="refused",
        target=table.target_name,
        mode=job.mode,
        row_filter=table.row_filter,
        columns=None if table.columns == everything else [c.name for c in table.columns],
    )
    if not table.key and job.write_mode == "append":
        unit.refusal = refusal_keyless_append(table)
        return unit
    try:
        check_row_filter(dbs.source, table)
        if probe:
            refuse_unstorable(dbs.source, table, dbs.target.dialect.name)
        with dbs.source.connect() as conn:
            links = sqlite_links(dbs, job, table)
            spec = target_table(conn, dbs.target, table, write_mode=job.write_mode, links=links)
    except (SchemaIncompatible, TableUnsupported, ConfigError) as exc:
        unit.refusal = str(exc)
        return unit
    unit.action, unit.ddl, unit.warnings = spec.state, spec.ddl, spec.warnings
    statements, refused = index_statements(dbs, table, objects)
    unit.indexes, unit.warnings = list(statements), [*unit.warnings, *refused]
    _mode_action(job, table, unit, fresh=spec.ddl is not None)
    if not table.key:
        unit.warnings = [KEYLESS_NOTE, *unit.warnings]
    return unit


def plan_job(job: Job, *, probe_values: bool = False) -> Plan:
    """Plan `job`: reads both catalogs, writes nothing to either database.

    `probe_values` also reads the rows of each table that may hold a value its target
    cannot store (a zero date, NUL in text; `unstorable.py`), as `datatrace plan` does:
    a scan of those tables, which a run does per unit, before its first row.

    Raises:
        DatabaseUnreachable: a database cannot be reached.
        TableNotFound: a table the job names is not in the source schema.
        ConfigError: the job's table_settings do not fit the source's tables.
    """
    dbs = Databases(job.source_url, job.target_url)
    try:
        tables = job_tables(dbs.catalog(), job)  # checks first that both servers answer
        objects = read_objects(dbs.source)
        units = [
            _plan_unit(dbs, job.for_table(t.name), t, objects, probe=probe_values) for t in tables
        ]
        notes = [AFTER_LOAD_NOTE]
        if objects.not_copied():
            notes.append(str(objects.not_copied()))
        if job.mode == "differential" or any(u.mode == "differential" for u in units):
            notes.insert(0, DIFFERENTIAL_NOTE)
        runs = [job.for_table(unit.table) for unit in units]
        windows = dict.fromkeys(
            (run.cursor, run.lookback) for run in [job, *runs] if run.mode == "incremental"
        )
        for cursor, lookback in reversed(list(windows)):
            notes.insert(0, INCREMENTAL_NOTE.format(cursor=cursor, lookback=lookback))
        return Plan(
            mode=job.mode,
            job=job.name,
            source=job.masked_source,
            target=job.masked_target,
            write_mode=job.write_mode,
            units=units,
            notes=notes,
            foreign_keys=planned_foreign_keys(dbs.target, tables, objects),
        )
    finally:
        dbs.dispose()
