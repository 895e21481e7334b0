"""Who hears of unit changes in this process: the listeners a UnitCache publishes to.

The state layer defines only the shape; the live layer's ProgressMonitor is the
listener the TaskManager plugs in, so the state layer never imports it.
"""

from __future__ import annotations

from typing import Protocol

from datatrace_tasks.state.units import TaskUnit


class UnitListener(Protocol):
    """Who hears of every unit change in this process (the ProgressMonitor, for one)."""

    def publish(self, task_id: str, unit: TaskUnit) -> None:
        """Take one unit change; must never block."""
        ...

    def forget(self, task_id: str) -> None:
        """Drop what is kept about a task."""
        ...


class Silent:
    """The listener of a cache nobody watches."""

    def publish(self, task_id: str, unit: TaskUnit) -> None:
        """Drop the change."""

    def forget(self, task_id: str) -> None:
        """Nothing is kept."""
