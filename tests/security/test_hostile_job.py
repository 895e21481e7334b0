"""Hostile identifiers and config values through the job file, with MariaDB's general log on.

Every hostile table name is refused by the catalog check (unless such a table really
exists), nothing reaches the target, no unit is left running, and the statements the
job ran are all of the expected shapes, with no payload outside a literal or a quoted
identifier. Legal-but-odd names copy exactly.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
import yaml
from sqlalchemy.engine import make_url

from datatrace_tasks.exceptions import DatabaseUnreachable, JobFileInvalid, TableNotFound
from datatrace_tasks.orchestration.lifecycle import create_task_from_job, run_task
from datatrace_tasks.orchestration.manager import TaskManager
from datatrace_tasks.state.store import Store
from datatrace_tasks.state.units import UnitStatus
from datatrace_tasks.sync import load_job
from datatrace_tasks.sync.catalog import resolve_tables
from datatrace_tasks.sync.engines import Databases
from tests.security.conftest import (
    VICTIM_ROWS,
    Captured,
    GeneralLog,
    MariaDB,
    odd_rows,
    unexpected,
)
from tests.security.hostile import ODD_COLUMNS, ODD_TABLES, hostile_identifiers, searchable

pytestmark = pytest.mark.mysql

HOSTILE = hostile_identifiers()
EXISTING = {"victim", *ODD_TABLES}
PERCENT_TABLE = "per%cent%s"  # a `%` in a MySQL name: see test_percent_in_names_copies
MARKUP_TABLE = "[b]rich[/b] [/]"  # rich markup in a name: see test_plan_shows_markup_names
COPYABLE = [n for n in ODD_TABLES if n != PERCENT_TABLE]


def write_job(path: Path, **fields: Any) -> Path:
    """A job file holding `fields`, written by a YAML emitter so any string survives."""
    path.write_text(yaml.safe_dump({"name": "hostile", **fields}, allow_unicode=True), "utf-8")
    return path


@dataclass
class Hostile:
    """The hostile tests' MariaDB: its source database, a scratch target, job files between."""

    tmp_path: Path
    mariadb: MariaDB
    source_db: str

    @cached_property
    def target_db(self) -> str:
        """An empty target database, created the first time a test asks for it."""
        return self.mariadb.create_database("dt_sec_dst")

    @property
    def source_url(self) -> str:
        """The scratch user's URL of the source database."""
        return self.mariadb.url(self.source_db)

    @property
    def target_url(self) -> str:
        """The scratch user's URL of the target database."""
        return self.mariadb.url(self.target_db)

    def job_file(self, name: str = "job.yaml", **fields: Any) -> Path:
        """A job file in tmp_path from the source to the target, unless `fields` name others."""
        if "source" not in fields:
            fields["source"] = self.source_url
        if "target" not in fields:
            fields["target"] = self.target_url
        return write_job(self.tmp_path / name, **fields)


@pytest.fixture
def hostile(tmp_path: Path, mariadb: MariaDB, source_db: str) -> Hostile:
    """The source, a lazily made target and job files, for one test."""
    return Hostile(tmp_path, mariadb, source_db)


def tasks_in(store: Store) -> int:
    """How many sync tasks the store holds."""
    return len(store.list_tasks(limit=10_000))


def assert_clean_log(captured: Captured, refused: list[str]) -> int:
    """Every statement of the capture window is expected, and no refused name is in
    any; returns how many statements were checked."""
    statements = captured.statements
    assert statements, "the general log recorded nothing: is it on?"
    bad = [(why, s[:300]) for s in statements if (why := unexpected(s))]
    assert bad == []
    leaked = [name for name in refused if searchable(name) and any(name in s for s in statements)]
    assert leaked == []
    return len(statements)


def refused_or_accepted(
    names: list[str], attempt: Callable[[str], object]
) -> tuple[list[str], list[str]]:
    """`attempt` each name in turn: the names refused (a TableNotFound naming the name as not
    in the source schema; any other error propagates) and the names accepted, in order."""
    refused, accepted = [], []
    for name in names:
        try:
            attempt(name)
        except TableNotFound as exc:
            assert repr(name) in str(exc)
            assert "not in the source schema" in str(exc)
            refused.append(name)
        else:
            accepted.append(name)
    return refused, accepted


def sample(values: list[str], size: int) -> list[str]:
    """`size` values spread evenly over `values`, first and last included."""
    step = (len(values) - 1) / (size - 1)
    return list(dict.fromkeys(values[round(i * step)] for i in range(size)))


# The names planned one job each through create_task_from_job: a spread over every
# family of the generator, the NUL, backslash, overlong and bidi ones by name, and
# each hostile name that really exists in the source.
MUST_PLAN = [
    "\x00",
    "evil\x00victim",
    "evil\\'; DROP TABLE victim; --",
    "victim\u202e",
    "evil" + "x" * 10_000,
]
SAMPLED = list(
    dict.fromkeys([*sample(HOSTILE, 15), *MUST_PLAN, *(n for n in HOSTILE if n in EXISTING)])
)


class TestHostileTables:
    """Hostile names in `tables`: refused by the catalog check before anything is written."""

    def test_at_least_200_hostile_values(self) -> None:
        """The generator yields 200+ distinct values that survive a YAML job file."""
        assert len(HOSTILE) >= 200 and len(set(HOSTILE)) == len(HOSTILE)

    def test_each_hostile_table_is_refused(
        self, hostile: Hostile, sqlite_store: Store, mariadb: MariaDB, general_log: GeneralLog
    ) -> None:
        """Each hostile name alone is refused naming it, unless the source really has it.

        Every name goes through its own job file and the catalog check the planner uses
        (resolve_tables over the source catalog, read once as plan_job reads it); a spread
        of 15 of them, a few named kinds, and every one that exists, also go the whole
        create_task_from_job way against the server, with the general log on. All of them
        together go that way in test_all_hostile_tables_in_one_job.
        """
        jobs = {
            name: load_job(hostile.job_file(f"job{i}.yaml", tables=[name]))
            for i, name in enumerate(HOSTILE)
        }
        dbs = Databases(jobs[HOSTILE[0]].source_url, jobs[HOSTILE[0]].target_url)
        try:
            catalog = dbs.catalog()
        finally:
            dbs.dispose()
        assert set(catalog) == EXISTING
        assert [name for name, job in jobs.items() if job.tables != [name]] == []

        def check(name: str) -> None:
            job = jobs[name]
            resolve_tables(catalog, job.tables, job.include, job.exclude)

        refused, accepted = refused_or_accepted(list(jobs), check)
        assert accepted == [n for n in HOSTILE if n in EXISTING]
        assert len(refused) == len(HOSTILE) - len(accepted) >= 200

        store = sqlite_store
        manager = TaskManager(store)
        with general_log.capture() as log:
            planned_refused, planned_accepted = refused_or_accepted(
                SAMPLED, lambda name: create_task_from_job(manager, jobs[name], job_path=None)
            )
        assert len(SAMPLED) >= 15 and set(MUST_PLAN) <= set(HOSTILE)
        assert planned_accepted == [n for n in SAMPLED if n in EXISTING] != []
        assert planned_refused == [n for n in SAMPLED if n in refused]
        assert tasks_in(store) == len(planned_accepted)
        assert all(
            u.status is UnitStatus.PENDING
            for t in store.list_tasks()
            for u in store.load_units(t.id)
        )
        assert mariadb.tables(hostile.target_db) == set()
        assert mariadb.tables(hostile.source_db) == EXISTING
        assert_clean_log(log, planned_refused)

    def test_all_hostile_tables_in_one_job(
        self, hostile: Hostile, sqlite_store: Store, mariadb: MariaDB, general_log: GeneralLog
    ) -> None:
        """All of them in one job: one refusal naming every unknown one, nothing created,
        and none of them reaches the server (general log on)."""
        store = sqlite_store
        job = load_job(hostile.job_file(tables=HOSTILE))
        assert job.tables == HOSTILE
        with general_log.capture() as log, pytest.raises(TableNotFound) as info:
            create_task_from_job(TaskManager(store), job, job_path=None)
        message = str(info.value)
        unknown = [n for n in HOSTILE if n not in EXISTING]
        assert len(unknown) >= 200
        assert [n for n in unknown if repr(n) not in message] == []
        assert "not in the source schema" in message
        assert tasks_in(store) == 0 and mariadb.tables(hostile.target_db) == set()
        assert mariadb.tables(hostile.source_db) == EXISTING
        assert_clean_log(log, unknown)

    def test_patterns_that_select_nothing_are_refused(
        self, hostile: Hostile, sqlite_store: Store
    ) -> None:
        """An include pattern matching no table is a clear error, not an empty task."""
        store = sqlite_store
        job = load_job(hostile.job_file(include=["evil`; DROP TABLE victim; --"]))
        with pytest.raises(TableNotFound):
            create_task_from_job(TaskManager(store), job, job_path=None)


# Values no numeric or enum setting may take; each file must be refused naming the key.
BAD_VALUES: list[Any] = [
    "1; DROP TABLE victim",
    "1 OR 1=1",
    "1`",
    "1'--",
    "1/* */",
    "\x00",
    "1\x00",
    "",
    " ",
    "-1",
    -1,
    "NaN",
    float("nan"),
    float("-inf"),
    "1e999x",
    [1],
    {"a": 1},
    "０",  # fullwidth zero
    "١",  # Arabic-Indic one
    "upsert; DROP TABLE victim",
    "UPSERT",
    "skip'--",
    "${HOME}",
]
CONFIG_KEYS = [
    "concurrency",
    "batch_size",
    "retries",
    "ranges",
    "throttle_rows_per_second",
    "write_mode",
    "error_strategy",
]
# Database names for the URL: none exists or is granted, so each is a connect refusal.
BAD_DATABASES = [
    "evil`; DROP DATABASE mysql; --",
    "evil'; DROP TABLE victim; --",
    'evil"',
    "evil/* */",
    "evil -- x",
    "evil#x",
    "information_schema`.`TABLES",
    "mysql",
    "evil%00",
    "evil\\",
    "ｅｖｉｌ",
    "evil; SELECT SLEEP(10)",
    "evil?init_command=DROP TABLE victim",
]


class TestHostileConfig:
    """Hostile values of the other keys and of the URLs' database names."""

    def test_bad_setting_values_are_refused(self, tmp_path: Path) -> None:
        """Each bad value of each numeric or enum key is refused naming that key."""
        tried = 0
        for key in CONFIG_KEYS:
            for i, value in enumerate(BAD_VALUES):
                path = write_job(
                    tmp_path / f"{key}{i}.yaml",
                    source="sqlite:///nowhere.db",
                    target="sqlite:///nowhere2.db",
                    **{key: value},
                )
                with pytest.raises(JobFileInvalid) as info:
                    load_job(path)
                assert key in str(info.value), (key, value, str(info.value))
                tried += 1
        assert tried == len(CONFIG_KEYS) * len(BAD_VALUES)
        assert not (tmp_path / "nowhere.db").exists()

    def test_hostile_database_names_are_refused(
        self, hostile: Hostile, sqlite_store: Store, mariadb: MariaDB, general_log: GeneralLog
    ) -> None:
        """A hostile database name in either URL is a connect refusal naming the database,
        password masked; only the expected statements run."""
        store = sqlite_store
        good_source, good_target = hostile.source_url, hostile.target_url
        with general_log.capture() as log:
            self._try_each(hostile.tmp_path, mariadb, store, good_source, good_target)
        assert tasks_in(store) == 0
        assert mariadb.tables(hostile.target_db) == set()
        assert mariadb.tables(hostile.source_db) == EXISTING
        assert_clean_log(log, [n for n in BAD_DATABASES if "mysql" not in n])

    @staticmethod
    def _try_each(
        tmp_path: Path, mariadb: MariaDB, store: Store, good_source: str, good_target: str
    ) -> None:
        """Each bad database name as the source, then as the target: a clear refusal."""
        for i, name in enumerate(BAD_DATABASES):
            bad = make_url(good_source).set(database=name).render_as_string(hide_password=False)
            for role, urls in (("source", (bad, good_target)), ("target", (good_source, bad))):
                path = write_job(
                    tmp_path / f"db{i}{role}.yaml", source=urls[0], target=urls[1], tables=["*"]
                )
                with pytest.raises((DatabaseUnreachable, JobFileInvalid)) as info:
                    create_task_from_job(TaskManager(store), load_job(path), job_path=None)
                message = str(info.value)
                assert mariadb.password not in message
                if isinstance(info.value, DatabaseUnreachable):
                    assert f"cannot connect to the {role}" in message
                    assert "***" in message

    def test_overlong_database_name_is_a_clear_refusal(
        self, tmp_path: Path, sqlite_store: Store, mariadb: MariaDB, source_db: str
    ) -> None:
        """A 74-character database name is a connect refusal, not a driver traceback."""
        bad = make_url(mariadb.url(source_db)).set(database="evil" + "x" * 70)
        path = write_job(
            tmp_path / "job.yaml",
            source=bad.render_as_string(hide_password=False),
            target=mariadb.url(source_db),
        )
        store = sqlite_store
        with pytest.raises(DatabaseUnreachable, match="cannot connect to the source"):
            create_task_from_job(TaskManager(store), load_job(path), job_path=None)


DATATRACE = [sys.executable, "-m", "datatrace_tasks"]


def datatrace(*args: str, state: Path) -> subprocess.CompletedProcess[str]:
    """The real CLI in a child process, with its own state store."""
    env = {**os.environ, "DATATRACE_DATABASE_URL": f"sqlite:///{state}", "COLUMNS": "250"}
    return subprocess.run([*DATATRACE, *args], capture_output=True, text=True, env=env, timeout=300)


CLI_CASES = [
    ("run", {"tables": ["victim`; DROP TABLE victim; --"]}, "victim`; DROP TABLE victim; --"),
    ("run", {"tables": ["victim", "evil'; SHUTDOWN; --"]}, "evil'; SHUTDOWN; --"),
    ("plan", {"tables": ["evil/* */ OR 1=1"]}, "evil/* */ OR 1=1"),
    ("run", {"tables": ["ｖｉｃｔｉｍ"]}, "ｖｉｃｔｉｍ"),
    ("run", {"tables": ["evil[/]"]}, "evil[/]"),
    ("run", {"batch_size": "1; DROP TABLE victim"}, "batch_size"),
]


class TestCli:
    """A handful of hostile job files through the real `datatrace` process."""

    @pytest.mark.parametrize(("command", "fields", "named"), CLI_CASES)
    def test_refused_with_exit_2(
        self,
        tmp_path: Path,
        hostile: Hostile,
        mariadb: MariaDB,
        command: str,
        fields: dict[str, Any],
        named: str,
    ) -> None:
        """Exit 2, one line naming the problem, password masked, no task, empty target."""
        job = hostile.job_file(**fields)
        out = datatrace(command, str(job), state=tmp_path / "state.db")
        assert out.returncode == 2, out.stderr
        assert out.stderr.startswith("error:"), out.stderr
        assert named in out.stderr
        assert "Traceback" not in out.stderr
        assert mariadb.password not in out.stdout + out.stderr
        assert mariadb.tables(hostile.target_db) == set()
        state = tmp_path / "state.db"
        if state.exists():
            assert tasks_in(Store(f"sqlite:///{state}")) == 0

    def test_plan_shows_odd_names_verbatim(
        self, tmp_path: Path, hostile: Hostile, mariadb: MariaDB
    ) -> None:
        """plan over the odd tables exits 0 and names each one as it is."""
        tables = [n for n in COPYABLE if n != MARKUP_TABLE]
        job = hostile.job_file(tables=tables)
        out = datatrace("plan", str(job), state=tmp_path / "state.db")
        assert out.returncode == 0, out.stderr
        for name in tables:
            assert name in out.stdout, name
        assert mariadb.tables(hostile.target_db) == set()

    def test_plan_shows_markup_names_verbatim(self, tmp_path: Path, hostile: Hostile) -> None:
        """A table named like rich markup is planned and shown as it is."""
        job = hostile.job_file(tables=[MARKUP_TABLE])
        out = datatrace("plan", str(job), state=tmp_path / "state.db")
        assert out.returncode == 0, out.stderr
        assert MARKUP_TABLE in out.stdout


def column_names(conn: sa.Connection, table: str) -> list[str]:
    """A table's column names in order, from the catalog.

    Not through SQLAlchemy's MySQL reflection, which parses SHOW CREATE TABLE and keeps
    a doubled backtick inside a column name doubled.
    """
    if conn.dialect.name in ("mysql", "mariadb"):
        rows = conn.execute(
            sa.text(
                "SELECT COLUMN_NAME FROM information_schema.COLUMNS WHERE TABLE_SCHEMA ="
                " DATABASE() AND TABLE_NAME = :t ORDER BY ORDINAL_POSITION"
            ),
            {"t": table},
        )
        return [str(r[0]) for r in rows]
    return [c["name"] for c in sa.inspect(conn).get_columns(table)]


class TestOddNames:
    """Legal-but-odd table and column names (spaces, unicode, backticks, quotes) copy."""

    @pytest.mark.usefixtures("prefect_harness")
    @pytest.mark.parametrize("target_kind", ["mariadb", "sqlite"])
    def test_odd_tables_copy_exactly(
        self, hostile: Hostile, sqlite_store: Store, general_log: GeneralLog, target_kind: str
    ) -> None:
        """Every odd table lands with its rows intact; only expected statements ran."""
        if target_kind == "mariadb":
            target = hostile.target_url
        else:
            target = f"sqlite:///{hostile.tmp_path}/target.db"
        store = sqlite_store
        manager = TaskManager(store, progress_interval=0.05)
        job = load_job(
            hostile.job_file(
                target=target, tables=[*COPYABLE, "victim"], batch_size=4, concurrency=3
            )
        )
        with general_log.capture() as log:
            task_id = create_task_from_job(manager, job, job_path=None)
            outcome = run_task(manager, task_id, job)
        units = {u.id: u for u in store.load_units(task_id)}
        assert outcome.ok, {u.id: u.error_message for u in units.values()}
        assert set(units) == {*COPYABLE, "victim"}
        engine = sa.create_engine(target)
        try:
            with engine.connect() as conn:
                for name in COPYABLE:
                    assert column_names(conn, name) == ODD_COLUMNS, name
                    table = sa.table(name, *(sa.column(c) for c in ODD_COLUMNS))
                    rows = conn.execute(sa.select(table).order_by(table.c.id))
                    assert [dict(r._mapping) for r in rows] == odd_rows(name), name
                victim = sa.table("victim")
                assert conn.scalar(sa.select(sa.func.count()).select_from(victim)) == VICTIM_ROWS
        finally:
            engine.dispose()
        assert hostile.mariadb.tables(hostile.source_db) == EXISTING
        assert_clean_log(log, [])

    @pytest.mark.usefixtures("prefect_harness")
    def test_percent_in_names_copies(self, hostile: Hostile, sqlite_store: Store) -> None:
        """A table whose name holds `%s` copies MariaDB to MariaDB like any other."""
        store = sqlite_store
        manager = TaskManager(store, progress_interval=0.05)
        job = load_job(hostile.job_file(tables=[PERCENT_TABLE], retries=0))
        task_id = create_task_from_job(manager, job, job_path=None)
        assert run_task(manager, task_id, job).ok
