"""Runs in the background of a long-lived process (the side-app): resume and retry.

The task's job runs in a thread here or, when a Prefect deployment is named, as a
flow run of that deployment. One run per task at a time; a task whose lease a live
runner holds is refused, by the same rule every other entry point applies.
"""

from __future__ import annotations

import logging
import threading

from datatrace_tasks.exceptions import ConfigError, TaskAlreadyRunning
from datatrace_tasks.orchestration.lifecycle import (
    check_can_run,
    job_for_task,
    retry_failed_units,
    run_task,
)
from datatrace_tasks.orchestration.manager import TaskManager
from datatrace_tasks.state.store import Store
from datatrace_tasks.state.units import TaskStatus
from datatrace_tasks.sync import Job
from datatrace_tasks.urls import mask_text

log = logging.getLogger("datatrace.api")


class BackgroundRuns:
    """Starts task runs in threads of this process and knows which are still going.

    Args:
        store: the state store.
        progress_interval: the run's progress write interval (None: from settings).
        deployment: `flow-name/deployment-name` of the sync flow; runs are triggered
            there (a worker picks them up) instead of running in this process.
    """

    def __init__(
        self,
        store: Store,
        *,
        progress_interval: float | None = None,
        deployment: str | None = None,
    ) -> None:
        self.store = store
        self.progress_interval = progress_interval
        self.deployment = deployment
        self._lock = threading.Lock()
        self._threads: dict[str, threading.Thread] = {}

    def running_here(self, task_id: str) -> bool:
        """Whether a thread of this process is running the task."""
        with self._lock:
            return self._running_here_locked(task_id)

    def start(self, task_id: str, *, retry_failed: bool) -> str:
        """Check the task can run, then run its unfinished units (or its failed ones).

        Returns:
            A sentence saying what started.

        Raises:
            TaskNotFound: no such task.
            TaskAlreadyRunning: it runs here or in another live process.
            TaskStateConflict: nothing to resume, or no failed unit to retry.
            ConfigError: the task's job cannot be rebuilt (job file gone).
        """
        with self._lock:
            if self._running_here_locked(task_id):
                raise TaskAlreadyRunning(f"task {task_id!r} is already running in this app")
            todo, units = check_can_run(self.store, task_id, retry_failed=retry_failed)
            if self.deployment is not None:
                if retry_failed:
                    retry_failed_units(self.store, task_id, todo)
                return f"{self._trigger(task_id)}: {len(todo)} unit(s) of {units} to run"
            job = job_for_task(self.store, task_id)
            if retry_failed:
                retry_failed_units(self.store, task_id, todo)
            manager = TaskManager(self.store, progress_interval=self.progress_interval)
            thread = threading.Thread(
                target=self._run,
                args=(manager, task_id, job),
                name=f"datatrace-run-{task_id[:8]}",
                daemon=True,
            )
            self._threads[task_id] = thread
            thread.start()
        if retry_failed:
            return f"retrying {len(todo)} failed unit(s) of {units}"
        return f"resuming {len(todo)} unfinished unit(s) of {units}"

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

    def _run(self, manager: TaskManager, task_id: str, job: Job) -> None:
        try:
            result = run_task(manager, task_id, job)
            log.info("task %s: %s", task_id, result.summary)
        except Exception as exc:  # a thread has no caller: record the failure on the task
            log.exception("run of task %s failed", task_id)
            try:
                self.store.set_task_status(
                    task_id, TaskStatus.FAILED, mask_text(f"run failed: {exc}")
                )
            except Exception:
                log.exception("could not record the failure of task %s", task_id)
