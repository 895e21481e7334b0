"""Schema objects around the rows: secondary and unique indexes built after a table's
rows, foreign keys once every table is in, AUTO_INCREMENT numbering past the copied
rows, defaults, NOT NULL and comments; views, triggers and routines named by `plan`
as not copied. Each checked by reading the target's own catalog."""

from __future__ import annotations

from collections.abc import Callable

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import URL

from datatrace_tasks.orchestration.lifecycle import create_task_from_job, run_task
from datatrace_tasks.orchestration.manager import TaskManager
from datatrace_tasks.state.units import TaskUnit
from datatrace_tasks.sync.copy import make_process_fn
from datatrace_tasks.sync.finish import add_foreign_keys
from datatrace_tasks.sync.job import Job
from datatrace_tasks.sync.plan import plan_job
from tests.sync.helpers import (
    PATHS,
    TARGETS,
    SyncKit,
    columns,
    execute,
    fetch,
    sqlite_keys_hold,
    use_path,
)

Signature = tuple[tuple[str, ...], bool]


def _run_all(job: Job, tables: list[str], sync: SyncKit) -> dict[str, TaskUnit]:
    process = make_process_fn(job)
    units = {}
    try:
        for name in tables:
            units[name] = TaskUnit(id=name, name=name)
            process(units[name], sync.reporter())
    finally:
        process.close()
    return units


def _indexes(url: URL, table: str) -> set[Signature]:
    """The table's indexes other than the primary key, as (columns, unique), read from
    the server's own catalog."""
    engine = sa.create_engine(url, poolclass=sa.pool.NullPool)
    try:
        with engine.connect() as conn:
            if engine.dialect.name in ("mysql", "mariadb"):
                rows = conn.execute(
                    sa.text(
                        "SELECT INDEX_NAME, NON_UNIQUE, COLUMN_NAME FROM"
                        " information_schema.STATISTICS WHERE TABLE_SCHEMA = DATABASE()"
                        " AND TABLE_NAME = :t AND INDEX_NAME <> 'PRIMARY'"
                        " AND INDEX_TYPE NOT IN ('FULLTEXT', 'SPATIAL')"
                        " ORDER BY INDEX_NAME, SEQ_IN_INDEX"
                    ),
                    {"t": table},
                ).all()
                found: dict[str, tuple[list[str], bool]] = {}
                for name, non_unique, column in rows:
                    found.setdefault(name, ([], not non_unique))[0].append(column)
                return {(tuple(cols), unique) for cols, unique in found.values()}
            inspector = sa.inspect(conn)
            return {
                (tuple(i["column_names"]), bool(i["unique"])) for i in inspector.get_indexes(table)
            } | {(tuple(u["column_names"]), True) for u in inspector.get_unique_constraints(table)}
    finally:
        engine.dispose()


def _foreign_keys(url: URL) -> set[tuple[str, tuple[str, ...], str, tuple[str, ...]]]:
    """(table, columns, parent, parent columns) of every foreign key, from the server."""
    engine = sa.create_engine(url, poolclass=sa.pool.NullPool)
    try:
        with engine.connect() as conn:
            if engine.dialect.name in ("mysql", "mariadb"):  # reflection balks at GEOMETRY
                found: dict[tuple[str, str], list[tuple[str, str, str]]] = {}
                for name, table, col, parent, pcol in conn.execute(
                    sa.text(
                        "SELECT CONSTRAINT_NAME, TABLE_NAME, COLUMN_NAME, REFERENCED_TABLE_NAME,"
                        " REFERENCED_COLUMN_NAME FROM information_schema.KEY_COLUMN_USAGE"
                        " WHERE TABLE_SCHEMA = DATABASE() AND REFERENCED_TABLE_NAME IS NOT NULL"
                        " ORDER BY ORDINAL_POSITION"
                    )
                ):
                    found.setdefault((table, name), []).append((col, parent, pcol))
                return {
                    (t, tuple(c[0] for c in cs), cs[0][1], tuple(c[2] for c in cs))
                    for (t, _), cs in found.items()
                }
            inspector = sa.inspect(conn)
            return {
                (
                    table,
                    tuple(fk["constrained_columns"]),
                    str(fk["referred_table"]),
                    tuple(fk["referred_columns"]),
                )
                for table in inspector.get_table_names()
                for fk in inspector.get_foreign_keys(table)
            }
    finally:
        engine.dispose()


@pytest.mark.slow
@pytest.mark.parametrize("kind", TARGETS)
def test_sakila_keeps_its_indexes_foreign_keys_and_numbering(
    kind: str, sakila: URL, sync: SyncKit, sakila_rows: dict[str, int]
) -> None:
    """Every Sakila index (but FULLTEXT and SPATIAL off MariaDB) is on the target with
    its columns and uniqueness, every foreign key (declared in SQLite's CREATE, whose
    rows then pass SQLite's own check),
    and a row inserted without its id or `last_update` gets the next number and the
    default."""
    target = sync.target(kind)
    job = sync.job(sakila, target, batch_size=1000)
    plan = plan_job(job)
    assert "not copied: views" in " ".join(plan.notes)
    assert "triggers customer_create_date" in " ".join(plan.notes)
    (film,) = [u for u in plan.units if u.table == "film"]
    assert len(film.indexes) == 3  # idx_title, idx_fk_language_id, idx_fk_original_language_id
    units = _run_all(job, list(sakila_rows), sync)
    keys = add_foreign_keys(job)
    for table in sakila_rows:
        assert _indexes(target, table) == _indexes(sakila, table), table
    assert keys.not_built == [] and len(keys.built) == 22
    assert _foreign_keys(target) == _foreign_keys(sakila)
    if kind == "sqlite":  # declared with each table: SQLite cannot add one later
        assert all(line.endswith(", declared") for line in keys.built)
        assert sqlite_keys_hold(target)
    else:
        assert add_foreign_keys(job).built == []  # a repeated run adds none twice
    assert "index idx_title" in " ".join(units["film"].extra["schema"]["built"]) or kind != "mysql"
    execute(target, "INSERT INTO actor (first_name, last_name) VALUES ('NEW', 'ACTOR')")
    assert fetch(target, "SELECT actor_id FROM actor WHERE first_name = 'NEW'") == [(201,)]
    stamped = fetch(target, "SELECT last_update FROM actor WHERE actor_id = 201")
    assert stamped[0][0] is not None


@pytest.fixture
def shaped(mysql_schema: Callable[[], URL]) -> URL:
    """`items`: a second unique key, a prefix index, a FULLTEXT index, comments and
    defaults of every kind; `notes`: an orphan row under a foreign key."""
    url = mysql_schema()
    execute(
        url,
        "CREATE TABLE items (id BIGINT UNSIGNED AUTO_INCREMENT PRIMARY KEY,"
        " code VARCHAR(20) CHARACTER SET latin1 COLLATE latin1_bin NOT NULL"
        " COMMENT 'the shop''s code',"
        " title VARCHAR(200) NOT NULL DEFAULT 'it''s new',"
        " price DECIMAL(6,2) NOT NULL DEFAULT 1.50,"
        " made TIMESTAMP NOT NULL DEFAULT CURRENT_TIMESTAMP ON UPDATE CURRENT_TIMESTAMP,"
        " stock INT DEFAULT (1 + 2), body TEXT,"
        " UNIQUE KEY by_code (code), KEY by_title (title(10)), FULLTEXT KEY words (body))",
        "CREATE TABLE notes (id INT PRIMARY KEY, item_id BIGINT UNSIGNED,"
        " CONSTRAINT note_item FOREIGN KEY (item_id) REFERENCES items (id))",
        "INSERT INTO items (code, title, body) VALUES ('a', 'first', 'x'), ('b', 'second', 'y')",
        "SET foreign_key_checks = 0",
        "INSERT INTO notes VALUES (1, 1), (2, 99)",
    )
    return url


@pytest.mark.parametrize("kind", TARGETS)
def test_indexes_defaults_and_comments_land_or_are_named(
    kind: str, shaped: URL, sync: SyncKit
) -> None:
    """The second unique key is enforced on the target, the prefix index is built (on
    the whole column off MariaDB), FULLTEXT off MariaDB is named as not built, the
    defaults and NOT NULL hold for a row inserted with only its code, and `plan`
    names each default and clause it cannot carry."""
    target = sync.target(kind)
    job = sync.job(shaped, target, tables=["items"])
    (planned,) = plan_job(job).units
    built = _run_all(job, ["items"], sync)["items"].extra["schema"]
    assert ((("code",), True)) in _indexes(target, "items")
    assert ((("title",), False)) in _indexes(target, "items")
    execute(target, "INSERT INTO items (code) VALUES ('c')")
    row = fetch(target, "SELECT id, title, price, made FROM items WHERE code = 'c'")[0]
    assert row[0] == 3 and row[1] == "it's new" and str(row[2]) == "1.50" and row[3] is not None
    with pytest.raises(sa.exc.IntegrityError):
        execute(target, "INSERT INTO items (code) VALUES ('a')")
    if kind == "mysql":  # the source's own DDL: character set, collation, comment, FULLTEXT
        ddl = fetch(target, "SHOW CREATE TABLE items")[0][1]
        assert built["not_built"] == [] and "FULLTEXT KEY `words`" in ddl
        assert "CHARACTER SET latin1 COLLATE latin1_bin NOT NULL COMMENT 'the shop''s code'" in ddl
        return
    assert any("FULLTEXT index 'words' not built" in why for why in built["not_built"])
    warnings = " ".join(planned.warnings)
    assert "stock: default (1 + 2) not copied" in warnings
    assert "made: ON UPDATE CURRENT_TIMESTAMP() not copied" in warnings
    if kind == "postgres":
        engine = sa.create_engine(target, poolclass=sa.pool.NullPool)
        comments = {c["name"]: c.get("comment") for c in sa.inspect(engine).get_columns("items")}
        engine.dispose()
        assert comments["code"] == "the shop's code"


@pytest.mark.parametrize("kind", [p for p in TARGETS if p.id != "sqlite"])
def test_a_foreign_key_the_rows_break_is_named_not_hidden(
    kind: str, shaped: URL, sync: SyncKit
) -> None:
    """A source whose rows break its own foreign key (checks were off when written):
    the target checks the rows when the key is added (MariaDB too, although the copy's
    sessions write with checks off), refuses it, and the run names it with the reason."""
    target = sync.target(kind)
    job = sync.job(shaped, target, tables=["items", "notes"])
    _run_all(job, ["items", "notes"], sync)
    keys = add_foreign_keys(job)
    assert keys.built == []
    (why,) = keys.not_built
    assert why.startswith("foreign key 'note_item' of 'notes': ")
    assert "99" in why or "a foreign key constraint fails" in why


@pytest.fixture
def family(mysql_schema: Callable[[], URL]) -> URL:
    """`parent` and `child` under a foreign key with ON DELETE CASCADE, rows consistent."""
    url = mysql_schema()
    execute(
        url,
        "CREATE TABLE parent (id INT PRIMARY KEY, v VARCHAR(5))",
        "CREATE TABLE child (id INT PRIMARY KEY, parent_id INT NOT NULL,"
        " CONSTRAINT child_parent FOREIGN KEY (parent_id) REFERENCES parent (id)"
        " ON DELETE CASCADE)",
        "INSERT INTO parent VALUES (1, 'a'), (2, 'b')",
        "INSERT INTO child VALUES (10, 1), (11, 2), (12, 2)",
    )
    return url


@pytest.mark.parametrize("kind", [p for p in TARGETS if p.id != "sqlite"])
def test_a_second_run_is_not_blocked_by_the_keys_the_first_added(
    kind: str, family: URL, sync: SyncKit, manager: TaskManager
) -> None:
    """Run twice in truncate mode (which empties each table first, parents included):
    the second run neither fails on the foreign key nor cascades the child away; the
    key is there again at its end, and the rows are exact."""
    target = sync.target(kind)
    job = sync.job(family, target, write_mode="truncate", concurrency=1)
    for _ in range(2):
        task_id = create_task_from_job(manager, job, job_path=None)
        result = run_task(manager, task_id, job)
        assert result.ok, result.summary
    assert _foreign_keys(target) == _foreign_keys(family)
    assert fetch(target, "SELECT id, parent_id FROM child ORDER BY id") == [
        (10, 1),
        (11, 2),
        (12, 2),
    ]


def test_odd_schemas_the_review_found(mysql_schema: Callable[[], URL], sync: SyncKit) -> None:
    """An AUTO_INCREMENT column indexed only by a unique key (MariaDB wants it indexed
    from the start), a left-out column named like its table, a default with `:word`
    in it, and a prefix index PostgreSQL cannot build over a long value: each copies;
    what the target refuses after the rows is named, not fatal."""
    source = mysql_schema()
    execute(
        source,
        "CREATE TABLE seqd (uuid CHAR(36) PRIMARY KEY, seq INT NOT NULL AUTO_INCREMENT,"
        " UNIQUE KEY seq_u (seq))",
        "INSERT INTO seqd VALUES ('a', 1), ('b', 2)",
        "CREATE TABLE tag (id INT PRIMARY KEY, tag VARCHAR(10), label VARCHAR(10)"
        " DEFAULT 'a \\:b', body TEXT, KEY by_body (body(255)))",  # \: for sa.text
        # 19,200 characters of hex, which no compression brings under an index entry
        "INSERT INTO tag (id, tag, body) SELECT 1, 'x', GROUP_CONCAT(MD5(seq) SEPARATOR '')"
        " FROM seq_1_to_600",
    )
    settings = {"tag": {"exclude_columns": ["tag"]}}
    for kind in ("mysql", "postgres"):
        target = sync.target(kind)
        job = sync.job(source, target, table_settings=settings)
        units = _run_all(job, ["seqd", "tag"], sync)
        assert all(u.extra["verification"]["ok"] for u in units.values())
        assert columns(target, "tag") == ["id", "label", "body"]
        execute(target, "INSERT INTO tag (id) VALUES (2)")
        assert fetch(target, "SELECT label FROM tag WHERE id = 2") == [("a :b",)]
        if kind == "postgres":
            (why,) = units["tag"].extra["schema"]["not_built"]
            assert why.startswith("index 'tag_by_body' not built: ")


def test_a_parent_the_job_leaves_out_is_named(shaped: URL, sync: SyncKit) -> None:
    """A child copied without its parent: `plan` and the run both name the foreign key
    and the missing table."""
    target = sync.target("mysql")
    job = sync.job(shaped, target, tables=["notes"])
    assert plan_job(job).foreign_keys == [
        "foreign key 'note_item' of 'notes' not added: the job does not copy 'items'"
    ]
    _run_all(job, ["notes"], sync)
    assert add_foreign_keys(job).not_built == plan_job(job).foreign_keys


@pytest.mark.parametrize(("kind", "path"), PATHS)
def test_generated_columns_keep_their_values(
    kind: str,
    path: str,
    mysql_schema: Callable[[], URL],
    sync: SyncKit,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A VIRTUAL and a STORED generated column (one indexed): MariaDB to MariaDB they
    stay generated, computed by the target; elsewhere their values are stored as plain
    columns, which `plan` says; either way the copy verifies through each write path."""
    use_path(monkeypatch, path)
    source = mysql_schema()
    execute(
        source,
        "CREATE TABLE g (id INT PRIMARY KEY, a INT, v INT AS (a * 2) VIRTUAL,"
        " s VARCHAR(12) AS (CONCAT('n', a)) STORED, KEY by_v (v))",
        "INSERT INTO g (id, a) VALUES (1, 1), (2, -5), (3, NULL), (4, 2147483)",
    )
    target = sync.target(kind)
    job = sync.job(source, target, tables=["g"], batch_size=2)
    (planned,) = plan_job(job).units
    unit = sync.run(job, "g")
    assert unit.extra["verification"]["ok"] and unit.extra["verification"]["target_rows"] == 4
    wanted = fetch(source, "SELECT id, a, v, s FROM g ORDER BY id")
    assert fetch(target, "SELECT id, a, v, s FROM g ORDER BY id") == wanted
    if kind == "mysql":
        assert "GENERATED ALWAYS AS" in fetch(target, "SHOW CREATE TABLE g")[0][1]
    else:
        assert "v: generated column stored as plain values" in " ".join(planned.warnings)


@pytest.mark.parametrize(("kind", "path"), PATHS)
def test_an_auto_increment_zero_row_stays_zero(
    kind: str,
    path: str,
    mysql_schema: Callable[[], URL],
    sync: SyncKit,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A row with 0 in its AUTO_INCREMENT key (a source under NO_AUTO_VALUE_ON_ZERO) keeps
    0 on every target and write path, not the next number; a new row then gets 6."""
    use_path(monkeypatch, path)
    source = mysql_schema()
    engine = sa.create_engine(source, poolclass=sa.pool.NullPool)
    with engine.begin() as conn:
        conn.exec_driver_sql("SET SESSION sql_mode = 'NO_AUTO_VALUE_ON_ZERO'")
        conn.exec_driver_sql(
            "CREATE TABLE a (id INT UNSIGNED AUTO_INCREMENT PRIMARY KEY, v VARCHAR(5))"
        )
        conn.exec_driver_sql("INSERT INTO a VALUES (0, 'zero'), (1, 'one'), (5, 'five')")
    engine.dispose()
    target = sync.target(kind)
    unit = sync.run(sync.job(source, target, tables=["a"]), "a")
    assert unit.extra["verification"]["ok"]
    assert fetch(target, "SELECT id, v FROM a ORDER BY id") == [
        (0, "zero"),
        (1, "one"),
        (5, "five"),
    ]
    execute(target, "INSERT INTO a (v) VALUES ('new')")
    assert fetch(target, "SELECT id FROM a WHERE v = 'new'") == [(6,)]


def test_sqlite_declares_keys_of_a_keyless_child_across_its_swap(
    mysql_schema: Callable[[], URL], sync: SyncKit
) -> None:
    """A table without a key (staged and swapped in) whose rows point at a parent: on
    SQLite its foreign key is declared with the table, survives a second run's swap,
    and SQLite's own check finds the rows sound."""
    source = mysql_schema()
    execute(
        source,
        "CREATE TABLE parent (id INT PRIMARY KEY)",
        "CREATE TABLE log (parent_id INT, v INT,"
        " CONSTRAINT log_parent FOREIGN KEY (parent_id) REFERENCES parent (id))",
        "INSERT INTO parent VALUES (1), (2)",
        "INSERT INTO log VALUES (1, 10), (1, 10), (2, 20)",
    )
    target = sync.target("sqlite")
    job = sync.job(source, target)
    for _ in range(2):
        _run_all(job, ["parent", "log"], sync)
        assert add_foreign_keys(job).built == ["foreign key log_parent (log -> parent), declared"]
    assert _foreign_keys(target) == {("log", ("parent_id",), "parent", ("id",))}
    assert sqlite_keys_hold(target)
    assert fetch(target, "SELECT COUNT(*) FROM log") == [(3,)]
