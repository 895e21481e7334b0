"""Running units away from the runner's process: task runners, Dask, picklable handles.

By default a task's units run in threads of the flow's process
(`ThreadPoolTaskRunner(max_workers=concurrency)`). To spread the units of one job
over a Dask cluster, run it under `use_task_runner(dask_task_runner(...))` or set
`DATATRACE_DASK_ADDRESS`: each unit is then pickled to a Dask worker, which opens
its own connection to the state store (so the store must be a server database, or
a SQLite file every worker can reach) and reports progress, checkpoints and status
there, exactly as a thread would. The runner still holds the task lease, watches
for cancellation and mirrors progress into the Prefect artifact from the store.

Example:
    >>> from datatrace_tasks.orchestration.scaleout import dask_task_runner, use_task_runner
    >>> with use_task_runner(dask_task_runner(address="tcp://scheduler:8786")):
    ...     manager.execute_auto_mode(task_id, 8, JobProcessFn(job))
"""

from __future__ import annotations

import os
import threading
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from datatrace_tasks.exceptions import ConfigError
from datatrace_tasks.settings import DataTraceSettings
from datatrace_tasks.urls import mask_url

if TYPE_CHECKING:
    from datatrace_tasks.state.cache import UnitCache
    from datatrace_tasks.state.reporter import ProgressReporter
    from datatrace_tasks.state.units import TaskUnit
    from datatrace_tasks.sync import Job
    from datatrace_tasks.sync.copy import JobCopy

DASK_ADDRESS_ENV = "DATATRACE_DASK_ADDRESS"

TaskRunnerFactory = Callable[[int], Any]
"""Builds a Prefect task runner for a job of the given concurrency."""

_factory: ContextVar[TaskRunnerFactory | None] = ContextVar("datatrace_task_runner", default=None)


@contextmanager
def use_task_runner(factory: TaskRunnerFactory | None) -> Iterator[None]:
    """Run the units of every task started in this block with `factory(concurrency)`."""
    token = _factory.set(factory)
    try:
        yield
    finally:
        _factory.reset(token)


def dask_task_runner(
    *, address: str | None = None, n_workers: int | None = None, threads_per_worker: int = 1
) -> TaskRunnerFactory:
    """A factory of prefect-dask `DaskTaskRunner`s: an existing cluster, or a LocalCluster.

    Args:
        address: scheduler address of a running cluster (`tcp://host:8786`).
        n_workers: without an address, worker processes of a temporary LocalCluster
            (default: the job's concurrency).
        threads_per_worker: threads per LocalCluster worker process.
    """

    def build(concurrency: int) -> Any:
        from prefect_dask.task_runners import DaskTaskRunner

        if address:
            return DaskTaskRunner(address=address)
        return DaskTaskRunner(
            cluster_kwargs={
                "n_workers": n_workers or concurrency,
                "threads_per_worker": threads_per_worker,
                "processes": True,
                "dashboard_address": None,
            }
        )

    return build


def task_runner_for(concurrency: int) -> tuple[Any, bool]:
    """The task runner for a job, and whether it already limits units to `concurrency`."""
    from prefect.task_runners import ThreadPoolTaskRunner

    factory = _factory.get()
    if factory is None and os.environ.get(DASK_ADDRESS_ENV):
        factory = dask_task_runner(address=os.environ[DASK_ADDRESS_ENV])
    if factory is None:
        return ThreadPoolTaskRunner(max_workers=concurrency), True
    runner = factory(concurrency)
    return runner, isinstance(runner, ThreadPoolTaskRunner)


# -- handles that travel to other processes ---------------------------------------------

_managers: dict[str, UnitCache] = {}
_managers_lock = threading.Lock()


@dataclass(frozen=True)
class ManagerHandle:
    """A picklable stand-in for the run's UnitCache.

    In the runner's process it resolves to the manager itself (memory cache, pause
    flags and monitors shared with the caller); in another process (a Dask worker)
    to one UnitCache per run over the same store URL.
    """

    token: str
    masked_store_url: str
    progress_interval: float

    def get(self) -> UnitCache:
        """The UnitCache of this run in the current process.

        Raises:
            ConfigError: in another process, its `DATATRACE_DATABASE_URL` is not the store.
        """
        with _managers_lock:
            manager = _managers.get(self.token)
            if manager is None:
                from datatrace_tasks.state.cache import UnitCache
                from datatrace_tasks.state.store import Store

                store = Store(_store_url_here(self.masked_store_url))
                manager = UnitCache(store, progress_interval=self.progress_interval)
                _managers[self.token] = manager
            return manager


def _store_url_here(masked: str) -> str:
    """The state store's full URL in this process: its own setting, which must match."""
    if "***" not in masked:
        return masked  # no password: the URL itself is all there is
    here = DataTraceSettings().store_url()
    if mask_url(here) != masked:
        raise ConfigError(
            f"this worker's DATATRACE_DATABASE_URL must name the run's state store {masked}"
        )
    return here


@contextmanager
def manager_handle(manager: UnitCache) -> Iterator[ManagerHandle]:
    """A handle on `manager` for the duration of one run."""
    handle = ManagerHandle(uuid.uuid4().hex, manager.store.masked_url, manager.progress_interval)
    with _managers_lock:
        _managers[handle.token] = manager
    try:
        yield handle
    finally:
        with _managers_lock:
            _managers.pop(handle.token, None)


_process_fns: dict[str, JobCopy] = {}


class JobProcessFn:
    """The copy engine's process function for a job, picklable for Dask workers.

    `make_process_fn` shares engines between threads behind a lock, which cannot be
    pickled; this builds that function once per process, on first use. Pickled, it
    carries the job file's path (the worker reads the file and its `${VAR}`s there)
    or, for a job with no file, the job with its URLs masked: never a password.
    """

    def __init__(self, job: Job, *, job_path: str | None = None) -> None:
        self._job: Job | None = job
        self.job_path = job_path
        self._masked = job.masked_dict
        self.token = uuid.uuid4().hex

    @property
    def job(self) -> Job:
        """The job, rebuilt in this process from its file (or its masked form) if need be.

        Raises:
            ConfigError: the job needs a password and has no file to read it from.
        """
        if self._job is None:
            from datatrace_tasks.sync import job_from_dict, load_job

            if self.job_path is not None:
                self._job = load_job(self.job_path)
            elif "***" in f"{self._masked['source']} {self._masked['target']}":
                raise ConfigError(
                    f"job {self._masked['name']!r} has no job file: a password cannot be sent "
                    "to another process; run it from a job file the workers can read"
                )
            else:
                self._job = job_from_dict(self._masked, where="the job sent to this worker")
        return self._job

    def __getstate__(self) -> dict[str, Any]:
        return {"job_path": self.job_path, "masked": self._masked, "token": self.token}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self._job = None
        self.job_path = state["job_path"]
        self._masked = state["masked"]
        self.token = state["token"]

    def __call__(self, unit: TaskUnit, reporter: ProgressReporter) -> None:
        from datatrace_tasks.sync import make_process_fn

        with _managers_lock:
            fn = _process_fns.get(self.token)
            if fn is None:
                fn = _process_fns[self.token] = make_process_fn(self.job)
        fn(unit, reporter)

    def close(self) -> None:
        """Release this process's engines of the job (the run is over)."""
        with _managers_lock:
            fn = _process_fns.pop(self.token, None)
        if fn is not None:
            fn.close()
