"""TaskManager: the seed's eleven operations, with `execute_auto_mode` running the units.

The unit operations (create, load, status, progress, failure, pause) live in the
state layer's `UnitCache`; this class adds the one operation that needs Prefect,
so the state layer never imports orchestration.
"""

from __future__ import annotations

from datatrace_tasks.live.progress import ProgressMonitor
from datatrace_tasks.state.cache import UnitCache
from datatrace_tasks.state.reporter import ProcessFn


class TaskManager(UnitCache):
    """Schedules the units of sync tasks and keeps memory, store and monitor consistent.

    Args:
        store: the state store; default from `DATATRACE_DATABASE_URL` (or embedded SQLite).
        monitor: where unit changes are published; a new ProgressMonitor by default.
        progress_interval: seconds between two progress writes of one unit.

    Example:
        >>> manager = TaskManager()
        >>> task_id = manager.create_task("copy", ["users", "orders"])
        >>> manager.execute_auto_mode(task_id, concurrency=2, process_fn=copy_one)
        2
    """

    monitor: ProgressMonitor

    def _default_monitor(self) -> ProgressMonitor:
        return ProgressMonitor()

    def execute_auto_mode(
        self,
        task_id: str,
        concurrency: int,
        process_fn: ProcessFn,
        progress_monitor: ProgressMonitor | None = None,
        *,
        error_strategy: str | None = None,
        retries: int = 0,
        retry_delay_seconds: float = 1.0,
    ) -> int:
        """Run every unit not `completed` as a Prefect task, at most `concurrency` at once.

        Returns:
            How many units completed in this run.

        Raises:
            ValueError: `concurrency` below 1.
            TaskNotFound: no such task.
        """
        from datatrace_tasks.orchestration.flow import run_units  # Prefect only to run

        if concurrency < 1:
            raise ValueError(f"concurrency must be at least 1, got {concurrency}")
        with self.listening(progress_monitor):
            return run_units(
                self,
                task_id,
                concurrency=concurrency,
                process_fn=process_fn,
                error_strategy=error_strategy,
                retries=retries,
                retry_delay_seconds=retry_delay_seconds,
            )
