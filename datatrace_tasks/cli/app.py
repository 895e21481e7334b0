"""The `datatrace` command line.

Prefect is imported only by the commands that run flows, so `--help` and `status`
answer at once.
"""

from __future__ import annotations

import contextlib
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any, TypeVar

import typer
from rich.console import Console
from rich.markup import escape

from datatrace_tasks.exceptions import DataTraceError
from datatrace_tasks.urls import mask_text

app = typer.Typer(
    name="datatrace",
    help="Observable, resumable, concurrency-limited database sync jobs on Prefect.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
console = Console()
err = Console(stderr=True)

F = TypeVar("F", bound=Callable[..., Any])

JobArg = Annotated[Path, typer.Argument(help="YAML job file (see README).", show_default=False)]
TaskArg = Annotated[str, typer.Argument(help="Sync task id, as `run` printed it.")]


def _quiet_prefect() -> None:
    """Keep Prefect's per-task INFO lines off the terminal the progress bars use."""
    os.environ.setdefault("PREFECT_LOGGING_LEVEL", "WARNING")
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "120")


def _prefect_server() -> None:
    """Use the shared local Prefect server (started on first use) and say where its UI is."""
    from datatrace_tasks.cli import prefect_server

    server = prefect_server.use_for_this_process(
        lambda: console.print("starting the local Prefect server (once; later ones reuse it) ...")
    )
    if server is not None:
        console.print(f"Prefect UI: [bold cyan]{server.ui_url}[/]")


def _manager() -> Any:
    from datatrace_tasks.orchestration.manager import TaskManager

    return TaskManager()


def _store() -> Any:
    from datatrace_tasks.settings import DataTraceSettings
    from datatrace_tasks.state.store import Store

    return Store(DataTraceSettings().store_url())


def _run_and_report(manager: Any, task_id: str, job: Any) -> None:
    from datatrace_tasks.cli.console import live_progress, units_table
    from datatrace_tasks.orchestration.lifecycle import run_task
    from datatrace_tasks.orchestration.stopping import pause_on_signals, run_interruptible

    started = time.monotonic()
    manager.load_task_units_from_db(task_id)
    with (
        pause_on_signals(manager, task_id) as stop,
        live_progress(manager.monitor, task_id, console),
    ):
        outcome = run_interruptible(lambda: run_task(manager, task_id, job))
    console.print(units_table(manager.store, task_id))
    for note in outcome.notes:
        console.print(escape(note))
    console.print(f"task {task_id}: {time.monotonic() - started:.1f} s")
    if stop.signum is not None:
        err.print(f"paused on request. Resume with: datatrace resume {task_id}")
        raise typer.Exit(stop.exit_code)
    if not outcome.ok:
        err.print(
            f"[red]not every unit completed[/]: {outcome.failed} failed, "
            f"{outcome.unfinished} unfinished. Resume with: datatrace resume {task_id}"
        )
        raise typer.Exit(1)


@app.command()
def demo(
    concurrency: Annotated[int, typer.Option(help="Units copied at once.")] = 3,
    folder: Annotated[
        Path | None, typer.Option(help="Where the demo databases go (default: data folder).")
    ] = None,
    serve: Annotated[
        bool, typer.Option(help="Serve the live dashboard while the job runs.")
    ] = True,
    port: Annotated[int, typer.Option(help="Dashboard port (another if it is taken).")] = 8000,
    keep_serving: Annotated[
        bool, typer.Option(help="Keep the dashboard up after the job, until Ctrl-C.")
    ] = False,
    scale: Annotated[float, typer.Option(help="Grow or shrink every demo table.", min=0.001)] = 1.0,
) -> None:
    """Generate a small SQLite shop database and sync it into another, live."""
    _quiet_prefect()
    _prefect_server()
    with contextlib.ExitStack() as stack:
        if serve:
            from datatrace_tasks.cli.serve import address, bind, dashboard_in_background

            sock = bind("127.0.0.1", port, fallback=True)
            console.print(f"live dashboard: [bold cyan]{address(sock)}[/]")
            stack.enter_context(dashboard_in_background(sock))
        _demo(concurrency, folder, scale)
        if serve and keep_serving:
            console.print("dashboard still up; Ctrl-C to stop")
            with contextlib.suppress(KeyboardInterrupt):
                while True:
                    time.sleep(3600)


def _demo(concurrency: int, folder: Path | None, scale: float) -> None:
    from datatrace_tasks.cli.demo import create_demo_source
    from datatrace_tasks.settings import DataTraceSettings
    from datatrace_tasks.sync import job_from_dict

    where = folder or DataTraceSettings().data_dir / "demo"
    source, target = where / "source.db", where / "target.db"
    console.print(f"generating the demo source database [bold]{source}[/] ...")
    rows = create_demo_source(source, scale=scale)
    target.unlink(missing_ok=True)
    console.print(f"{sum(rows.values()):,} rows in {len(rows)} tables; syncing to {target}")
    job = job_from_dict(
        {
            "name": "demo-shop",
            "source": f"sqlite:///{source}",
            "target": f"sqlite:///{target}",
            "concurrency": concurrency,
            "batch_size": 5000,
        },
        where="demo job",
    )
    from datatrace_tasks.orchestration.lifecycle import create_task_from_job

    manager = _manager()
    task_id = create_task_from_job(manager, job, job_path=None)
    console.print(f"sync task [bold]{task_id}[/]")
    _run_and_report(manager, task_id, job)


@app.command()
def serve(
    host: Annotated[str, typer.Option(help="Interface to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to listen on.")] = 8000,
) -> None:
    """Serve the live-progress dashboard and REST/SSE API over the state store."""
    from datatrace_tasks.cli.serve import address, bind, serve_forever

    try:
        sock = bind(host, port)
    except OSError as exc:
        where = escape(f"{host}:{port}: {exc.strerror or exc}")
        err.print(f"[red]error:[/] cannot listen on {where}")
        raise typer.Exit(2) from None
    console.print(f"serving the dashboard on [bold cyan]{address(sock)}[/]")
    serve_forever(sock)


@app.command()
def plan(job_file: JobArg) -> None:
    """Dry run: each unit, its estimated rows, the DDL a run would execute, and refusals."""
    from datatrace_tasks.sync import load_job, plan_job

    result = plan_job(load_job(job_file), probe_values=True)
    console.print(result.render())
    if result.refused:
        err.print(f"[red]{len(result.refused)} table(s) would be refused[/]")
        raise typer.Exit(1)


@app.command()
def run(job_file: JobArg) -> None:
    """Create a sync task from a job file and run it; exit 0 only if every unit completed."""
    _quiet_prefect()
    from datatrace_tasks.orchestration.lifecycle import create_task_from_job
    from datatrace_tasks.sync import load_job

    job = load_job(job_file)  # a bad file is refused before anything starts
    _prefect_server()
    manager = _manager()
    task_id = create_task_from_job(manager, job, job_path=job_file)
    console.print(f"sync task [bold]{task_id}[/]")
    _run_and_report(manager, task_id, job)


@app.command()
def resume(task_id: TaskArg) -> None:
    """Continue a paused, failed or interrupted task: only units not completed run."""
    _quiet_prefect()
    from datatrace_tasks.orchestration.lifecycle import job_for_task

    manager = _manager()
    job = job_for_task(manager.store, task_id)  # an unknown task is refused first
    _prefect_server()
    _run_and_report(manager, task_id, job)


@app.command()
def pause(task_id: TaskArg) -> None:
    """Ask a running task (in any process) to pause at its units' next batch."""
    from datatrace_tasks.orchestration.lifecycle import pause_task

    pause_task(_store(), task_id)
    console.print(f"pause requested for {task_id}")


@app.command()
def status(task_id: TaskArg) -> None:
    """Show a task's units: status, rows, percentage, time, errors."""
    from datatrace_tasks.cli.console import units_table

    console.print(units_table(_store(), task_id))


@app.command()
def tasks() -> None:
    """List the newest sync tasks."""
    from rich.table import Table

    store = _store()
    table = Table("id", "name", "status", "created (UTC)", "message")
    for t in store.list_tasks():
        table.add_row(t.id, t.name, t.status, f"{t.created_at:%Y-%m-%d %H:%M:%S}", t.message)
    console.print(table)


@app.command()
def history(
    job: Annotated[str, typer.Argument(help="A job's name, or its YAML job file.")],
    limit: Annotated[int, typer.Option(help="How many runs, newest first.")] = 20,
) -> None:
    """List a job's runs: mode, outcome, rows read, written and deleted, seconds."""
    from datatrace_tasks.cli.console import history_lines

    name = job
    if job.endswith((".yaml", ".yml")) and Path(job).is_file():
        from datatrace_tasks.sync import load_job

        name = load_job(job).name
    runs = _store().job_runs(name, limit=limit)
    if not runs:
        err.print(f"[red]error:[/] no run of a job named {escape(repr(name))} is in the store")
        raise typer.Exit(1)
    for line in history_lines(name, runs):
        console.print(line, highlight=False)


@app.command()
def verify(task_id: TaskArg) -> None:
    """Re-check a task's target tables against the source (counts and checksums)."""
    from datatrace_tasks.orchestration.lifecycle import job_for_task
    from datatrace_tasks.sync import verify_job

    store = _store()
    job = job_for_task(store, task_id)
    tables = [u.id for u in store.load_units(task_id)]
    results = verify_job(job, tables)
    bad = 0
    for table, result in results.items():
        ok = result.get("ok", True) if isinstance(result, dict) else True
        bad += not ok
        mark = "[green]ok[/]" if ok else "[red]MISMATCH[/]"
        console.print(f"{mark} {escape(table)}: {escape(str(result))}")
    if bad:
        raise typer.Exit(1)


prefect_app = typer.Typer(
    help="The local Prefect server `run`, `resume` and `demo` share (its UI shows every run).",
    no_args_is_help=True,
)
app.add_typer(prefect_app, name="prefect")


@prefect_app.command("status")
def prefect_status() -> None:
    """Say whether the local Prefect server runs, and where its UI is."""
    from datatrace_tasks.cli import prefect_server

    server = prefect_server.running()
    if server is None:
        console.print("the local Prefect server is not running (`datatrace prefect start`)")
        raise typer.Exit(1)
    console.print(f"running (pid {server.pid}); Prefect UI: [bold cyan]{server.ui_url}[/]")


@prefect_app.command("start")
def prefect_start() -> None:
    """Start the local Prefect server in the background (if it is not running yet)."""
    from datatrace_tasks.cli import prefect_server

    server = prefect_server.ensure()
    console.print(f"running (pid {server.pid}); Prefect UI: [bold cyan]{server.ui_url}[/]")


@prefect_app.command("stop")
def prefect_stop() -> None:
    """Stop the local Prefect server (its flow runs stay in its database)."""
    from datatrace_tasks.cli import prefect_server

    server = prefect_server.stop()
    console.print("stopped" if server is not None else "it was not running")


def main() -> None:
    """Entry point: one readable line per known error, passwords masked, non-zero exit."""
    try:
        app()
    except DataTraceError as exc:
        # escape: the message may quote user text (a table name) that looks like markup.
        err.print(f"[red]error:[/] {escape(mask_text(str(exc)))}", highlight=False)
        sys.exit(2)
    except KeyboardInterrupt:
        err.print("interrupted")
        sys.exit(130)
