"""`datatrace plan`: what a run would do to each table, without writing anything."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from rich.markup import escape
from rich.table import Table as RichTable

from datatrace_tasks.exceptions import SchemaIncompatible
from datatrace_tasks.sync.catalog import resolve_tables
from datatrace_tasks.sync.ddl import target_table
from datatrace_tasks.sync.engines import Databases, is_mysql
from datatrace_tasks.sync.job import Job
from datatrace_tasks.sync.keyless import KEYLESS_NOTE, refusal_keyless_append

NOTES_MYSQL = (
    "foreign keys and triggers are not copied: tables are copied in parallel, in any order"
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
            if unit.ddl:
                details.append(unit.ddl)
            out.add_row(
                escape(unit.table),
                f"{unit.estimated_rows:,}",
                escape(", ".join(unit.key)) or "-",
                "[red]refused[/red]" if unit.refusal else escape(unit.action),
                escape("\n".join(details)),
            )
        if self.notes:
            out.caption = escape("; ".join(self.notes))
        return out


DIFFERENTIAL_NOTE = (
    "mode differential: each table the target holds is compared with the source key"
    " bucket by bucket, the rows that differ or are missing are written, rows gone from the"
    " source are deleted, then the table is verified; a new table is copied in full"
)


def plan_job(job: Job) -> Plan:
    """Plan `job`: reads both catalogs, writes nothing to either database.

    Raises:
        DatabaseUnreachable: a database cannot be reached.
        TableNotFound: a table the job names is not in the source schema.
    """
    dbs = Databases(job.source_url, job.target_url)
    try:
        catalog = dbs.catalog()
        units = []
        for table in resolve_tables(catalog, job.tables, job.include, job.exclude):
            unit = PlannedUnit(
                table=table.name,
                estimated_rows=table.estimated_rows,
                key=list(table.key),
                key_origin=table.key_origin,
                action="refused",
            )
            units.append(unit)
            if not table.key and job.write_mode == "append":
                unit.refusal = refusal_keyless_append(table)
                continue
            try:
                with dbs.source.connect() as conn:
                    spec = target_table(conn, dbs.target, table, write_mode=job.write_mode)
            except SchemaIncompatible as exc:
                unit.refusal = str(exc)
                continue
            unit.action, unit.ddl, unit.warnings = spec.state, spec.ddl, spec.warnings
            if job.mode == "differential" and table.key and not spec.ddl:
                unit.action += "; differential: only rows that differ are written"
            if not table.key:
                unit.warnings = [KEYLESS_NOTE, *unit.warnings]
        notes = (
            [NOTES_MYSQL]
            if is_mysql(dbs.target)
            else ["foreign keys, triggers and secondary indexes are not copied"]
        )
        if job.mode == "differential":
            notes.insert(0, DIFFERENTIAL_NOTE)
        return Plan(
            mode=job.mode,
            job=job.name,
            source=job.masked_source,
            target=job.masked_target,
            write_mode=job.write_mode,
            units=units,
            notes=notes,
        )
    finally:
        dbs.dispose()
