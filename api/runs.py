"""Resume and retry in the side-app: the task's job runs in a background thread here,
or, when a Prefect deployment is configured, as a flow run of that deployment.

One run per task at a time. A task another process is running (status `running` with
a recent event) is refused too; a `running` status with no event for `stale_after`
seconds is taken for a crashed runner, so the task can be resumed.
"""

from __future__ import annotations

import logging
import threading
from datetime import timedelta

from api.errors import ActionConflict
from datatrace_tasks.exceptions import ConfigError, TaskAlreadyRunning
from datatrace_tasks.live.rollup import last_activity
from datatrace_tasks.orchestration.lifecycle import job_for_task, run_task
from datatrace_tasks.orchestration.manager import TaskManager
from datatrace_tasks.settings import DataTraceSettings
from datatrace_tasks.state.models import utcnow
from datatrace_tasks.state.store import Store, SyncTask
from datatrace_tasks.state.units import UnitStatus
from datatrace_tasks.sync import Job
from datatrace_tasks.urls import mask_text

log = logging.getLogger("datatrace.api")


class BackgroundRuns:
    """Starts task runs in threads of this process and knows which are still going.

    Args:
        store: the state store.
        stale_after: seconds without an event after which a `running` task counts as dead.
        progress_interval: the run's progress write interval (None: from settings).
        deployment: `flow-name/deployment-name` of the sync flow; runs are triggered
            there (a worker picks them up) instead of running in this process.
    """

    def __init__(
        self,
        store: Store,
        *,
        stale_after: float = 60.0,
        progress_interval: float | None = None,
        deployment: str | None = None,
    ) -> None:
        self.store = store
        self.stale_after = stale_after
        self.progress_interval = progress_interval
        self.deployment = deployment
        self._lock = threading.Lock()
        self._threads: dict[str, threading.Thread] = {}

    def running_here(self, task_id: str) -> bool:
        """Whether a thread of this process is running the task."""
        with self._lock:
            return self._running_here_locked(task_id)

    def start(self, task_id: str, *, retry_failed: bool) -> str:
        """Check the task can run, then run its unfinished units in a new thread.

        Returns:
            A sentence saying what started.

        Raises:
            TaskNotFound: no such task.
            TaskAlreadyRunning: it runs here or in another live process.
            ActionConflict: nothing to resume, or no failed unit to retry.
            ConfigError: the task's job cannot be rebuilt (job file gone).
        """
        manager = TaskManager(self.store, progress_interval=self.progress_interval)
        task = self.store.get_task(task_id)
        with self._lock:
            if self._running_here_locked(task_id):
                raise TaskAlreadyRunning(f"task {task_id!r} is already running in this app")
            self._refuse_if_claimed(task)
            self._refuse_if_running_elsewhere(task_id, task.status)
            units = self.store.load_units(task_id)
            failed = [u.id for u in units if u.status is UnitStatus.FAILED]
            todo = [u for u in units if u.status is not UnitStatus.COMPLETED]
            if retry_failed and not failed:
                raise ActionConflict(f"task {task_id!r} has no failed unit to retry")
            if not todo:
                raise ActionConflict(f"every unit of task {task_id!r} is already completed")
            if self.deployment is not None:
                if retry_failed:
                    self.store.reset_units(task_id, failed)
                started = self._trigger(task_id)
                what = f"{len(failed)} failed unit(s)" if retry_failed else f"{len(todo)} unit(s)"
                return f"{started}: {what} of {len(units)} to run"
            job = job_for_task(manager, task_id)
            if retry_failed:
                self.store.reset_units(task_id, failed)
            thread = threading.Thread(
                target=self._run,
                args=(manager, task_id, job),
                name=f"datatrace-run-{task_id[:8]}",
                daemon=True,
            )
            self._threads[task_id] = thread
            thread.start()
        if retry_failed:
            return f"retrying {len(failed)} failed unit(s) of {len(units)}"
        return f"resuming {len(todo)} unfinished unit(s) of {len(units)}"

    def _trigger(self, task_id: str) -> str:
        """Start a flow run of the configured deployment for the task; says which."""
        from prefect.client.schemas.objects import FlowRun
        from prefect.deployments import run_deployment
        from prefect.exceptions import ObjectNotFound

        assert self.deployment is not None
        try:
            flow_run = run_deployment(self.deployment, parameters={"task_id": task_id}, timeout=0)
        except ObjectNotFound:
            raise ConfigError(
                f"Prefect deployment {self.deployment!r} was not found; check "
                "DATATRACE_API_DEPLOYMENT and PREFECT_API_URL"
            ) from None
        assert isinstance(flow_run, FlowRun)  # called from sync code: not a coroutine
        return f"flow run {flow_run.name!r} of deployment {self.deployment!r} scheduled"

    def pause_all(self, *, wait_seconds: float = 5.0) -> None:
        """Ask every run of this process to pause at its next batch, and wait a little."""
        with self._lock:
            threads = {t: th for t, th in self._threads.items() if th.is_alive()}
        for task_id in threads:
            try:
                self.store.set_pause_requested(task_id, True)
            except Exception:
                log.exception("could not ask task %s to pause", task_id)
        for thread in threads.values():
            thread.join(wait_seconds)

    def _running_here_locked(self, task_id: str) -> bool:
        thread = self._threads.get(task_id)
        return thread is not None and thread.is_alive()

    def _refuse_if_claimed(self, task: SyncTask) -> None:
        """A runner's fresh lease on the task means it is live."""
        if task.owner is None or task.heartbeat_at is None:
            return
        lease = timedelta(seconds=DataTraceSettings().lease_seconds)
        if utcnow() - task.heartbeat_at < lease:
            raise TaskAlreadyRunning(
                f"task {task.id!r} is running in {task.owner} (last heartbeat "
                f"{task.heartbeat_at:%H:%M:%S} UTC); pause it first"
            )

    def _refuse_if_running_elsewhere(self, task_id: str, status: str) -> None:
        if status != "running":
            return
        last = last_activity(self.store, task_id)
        if last is not None and utcnow() - last < timedelta(seconds=self.stale_after):
            raise TaskAlreadyRunning(
                f"task {task_id!r} is running in another process (last event at {last:%H:%M:%S} "
                "UTC); pause it first"
            )

    def _run(self, manager: TaskManager, task_id: str, job: Job) -> None:
        try:
            outcome = run_task(manager, task_id, job)
            log.info("task %s: %d of %d units completed", task_id, outcome.completed, outcome.units)
        except Exception as exc:  # a thread has no caller: record the failure on the task
            log.exception("run of task %s failed", task_id)
            try:
                self.store.set_task_status(task_id, "failed", mask_text(f"run failed: {exc}"))
            except Exception:
                log.exception("could not record the failure of task %s", task_id)
