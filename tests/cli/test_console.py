"""The terminal views, drawn by rich into a string: what a person reads in a CI log."""

from __future__ import annotations

import re
import time
from dataclasses import replace

from rich.console import Console
from rich.progress import Progress

from datatrace_tasks.cli.console import UnitElapsedColumn, live_progress
from datatrace_tasks.live.progress import ProgressMonitor
from datatrace_tasks.state.units import TaskUnit, UnitStatus


class TestUnitElapsed:
    def test_a_bar_counts_to_the_units_end_not_to_its_last_row(self) -> None:
        """A unit whose rows were all copied at 1.2 s and that ended (verified) at 3.55 s
        shows 3.5s, as long as the summary's 3.55 seconds, not rich's 1.2 s; one past a
        minute shows h:mm:ss, one not started a dash."""
        clock = [100.0]
        progress = Progress(UnitElapsedColumn(), get_time=lambda: clock[0])
        done = progress.add_task("order_items", total=200_000)
        clock[0] = 101.2
        progress.update(done, completed=200_000)  # the last row: rich's own clock stops
        clock[0] = 103.55
        progress.stop_task(done)  # the unit's end, after its verification
        long = progress.add_task("big", total=1)
        clock[0] = 103.55 + 75
        progress.stop_task(long)
        waiting = progress.add_task("regions", total=1, start=False)
        column = UnitElapsedColumn()
        shown = [column.render(progress.tasks[i]).plain for i in (done, long, waiting)]
        assert shown == ["3.5s", "0:01:15", "-"]


class TestLiveBars:
    def test_a_repeated_final_update_does_not_move_a_bars_clock(self) -> None:
        """The run publishes each unit's final state again at its end: a unit that ran
        0.3 s and was reported completed again 0.6 s later still shows about 0.3 s, as
        the summary does (it showed the whole run's time before)."""
        monitor = ProgressMonitor()
        unit = TaskUnit(id="a", name="a", total_records=10)
        monitor.publish("t", unit)
        console = Console(width=80, record=True, force_terminal=True)
        with live_progress(monitor, "t", console):
            monitor.publish("t", replace(unit, status=UnitStatus.RUNNING))
            time.sleep(0.3)
            done = replace(unit, status=UnitStatus.COMPLETED, processed_records=10)
            monitor.publish("t", done)
            time.sleep(0.6)
            monitor.publish("t", done)
            time.sleep(0.2)
        shown = re.findall(r"(\d+\.\d)s", console.export_text())
        assert shown, console.export_text()
        assert 0.2 <= float(shown[-1]) <= 0.6, console.export_text()
