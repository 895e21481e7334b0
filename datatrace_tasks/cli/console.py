"""Terminal views: live per-unit progress bars and the summary table, drawn with rich."""

from __future__ import annotations

import queue
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from datetime import timedelta

from rich.console import Console, Group
from rich.markup import escape
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    Task,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.table import Table
from rich.text import Text

from datatrace_tasks.live.progress import ProgressMonitor, UnitUpdate
from datatrace_tasks.state.records import elapsed_seconds
from datatrace_tasks.state.store import JobRun, Store
from datatrace_tasks.state.units import UnitStatus

_STYLE = {
    UnitStatus.PENDING: "dim",
    UnitStatus.RUNNING: "cyan",
    UnitStatus.COMPLETED: "green",
    UnitStatus.FAILED: "bold red",
    UnitStatus.PAUSED: "yellow",
}


class UnitElapsedColumn(TimeElapsedColumn):
    """A unit's time from its start to its end, as the summary counts it: rich's own
    column stops its clock at the last row, before the unit's verification."""

    def render(self, task: Task) -> Text:
        """Seconds with a tenth under a minute (the summary shows hundredths), else h:mm:ss."""
        elapsed = task.elapsed
        if elapsed is None:
            return Text("-", style="progress.elapsed")
        if elapsed < 60:
            return Text(f"{elapsed:.1f}s", style="progress.elapsed")
        return Text(str(timedelta(seconds=int(elapsed))), style="progress.elapsed")


@contextmanager
def live_progress(monitor: ProgressMonitor, task_id: str, console: Console) -> Iterator[None]:
    """Draw one bar per unit of `task_id`, fed by the monitor, while the block runs."""
    progress = Progress(
        TextColumn("{task.fields[status]:>9}"),
        TextColumn("[bold]{task.description}", justify="left"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.percentage:>5.1f}%"),
        UnitElapsedColumn(),
        TimeRemainingColumn(),
        console=console,
        refresh_per_second=8,
    )
    bars: dict[str, TaskID] = {}
    stop = threading.Event()

    def apply(update: UnitUpdate) -> None:
        if update.task_id != task_id:
            return
        unit = update.unit
        status = f"[{_STYLE[unit.status]}]{unit.status.value}[/]"
        total = max(unit.total_records, unit.processed_records, 1)
        if unit.id not in bars:
            # A bar's clock starts when its unit starts running, not when it is listed.
            bars[unit.id] = progress.add_task(
                escape(unit.name),
                total=total,
                status=status,
                start=unit.status is UnitStatus.RUNNING,
            )
        bar = bars[unit.id]
        drawn = progress.tasks[bar]
        if unit.status is UnitStatus.RUNNING:
            if not drawn.started:
                progress.start_task(bar)
            drawn.stop_time = None  # running again (a retry): its clock goes on
        progress.update(bar, completed=unit.processed_records, total=total, status=status)
        # Stopped once, at the unit's end: a repeated final update must not move it on.
        if unit.status.is_final and drawn.stop_time is None:
            progress.stop_task(bar)

    def pump(updates: queue.Queue[UnitUpdate]) -> None:
        while not stop.is_set():
            try:
                apply(updates.get(timeout=0.1))
            except queue.Empty:
                continue
        while not updates.empty():
            apply(updates.get_nowait())

    for unit in monitor.units(task_id):
        apply(UnitUpdate(task_id, unit))
    with monitor.subscribe() as updates, progress:
        thread = threading.Thread(target=pump, args=(updates,), daemon=True)
        thread.start()
        try:
            yield
        finally:
            stop.set()
            thread.join()


def units_table(store: Store, task_id: str) -> Group:
    """The units of a task: a table of status, rows, %, seconds and rows/s that stays
    whole at 80 columns (a status is never cut to "comple…"), then each unit's error
    in full on lines of its own, where a CI log or an ssh session shows all of it."""
    task = store.get_task(task_id)
    # Names, messages and errors are data, never markup: a table may be called "[b]".
    table = Table(
        title=f"{escape(task.name)}  [dim]{task.id}[/]  {task.status}", title_justify="left"
    )
    table.add_column("unit", overflow="fold", min_width=8)
    table.add_column("status", no_wrap=True, min_width=len("completed"))
    for name in ("rows", "%", "seconds", "rows/s"):
        table.add_column(name, justify="right", no_wrap=True)
    total_rows, errors = 0, []
    for unit, row in store.load_units_and_rows(task_id):
        secs = elapsed_seconds(row)
        rate = f"{unit.processed_records / secs:,.0f}" if secs else ""
        total_rows += unit.processed_records
        table.add_row(
            escape(unit.name),
            f"[{_STYLE[unit.status]}]{unit.status.value}[/]",
            f"{unit.processed_records:,}",
            f"{unit.percentage:.1f}",
            "" if secs is None else f"{secs:.2f}",
            rate,
        )
        if unit.error_message:
            errors.append(Text.assemble((unit.name, "bold"), ": ", unit.error_message))
    if task.message:
        table.caption = f"{total_rows:,} rows; {escape(task.message)}"
    return Group(table, *errors)


def history_lines(name: str, runs: Sequence[JobRun]) -> list[str]:
    """A job's runs, newest first, three short lines each: whole at 80 columns and in a
    CI log (a table of nine columns and a 36-character task id is not)."""
    lines = [f"runs of {escape(name)}, newest first"]
    for run in runs:
        style = next((v for k, v in _STYLE.items() if k.value == run.status), "")
        status = f"[{style}]{run.status}[/]" if style else escape(run.status)
        seconds = "" if run.seconds is None else f" in {run.seconds:.1f} s"
        lines += [
            f"{run.created_at:%Y-%m-%d %H:%M:%S}  {run.mode}  {status}"
            f"  units {run.completed}/{run.units} completed, {run.verified} verified",
            f"  task {run.task_id}",
            f"  rows read {run.rows_read:,}, written {run.rows_written:,},"
            f" deleted {run.rows_deleted:,}{seconds}",
        ]
        if run.flow_run_url:  # alone on its line: 75 characters for a local server
            lines.append(f"  {run.flow_run_url}")
    return lines
