"""The table-copy engine: resumable, verified copies of a MySQL schema (issue 3)."""

from datatrace_tasks.sync.copy import JobCopy, copy_table, make_process_fn
from datatrace_tasks.sync.job import Job, job_from_dict, load_job
from datatrace_tasks.sync.plan import Plan, PlannedUnit, plan_job
from datatrace_tasks.sync.sinks import Sink, SqlSink
from datatrace_tasks.sync.verify import verify_job, verify_table

__all__ = [
    "Job",
    "JobCopy",
    "Plan",
    "PlannedUnit",
    "Sink",
    "SqlSink",
    "copy_table",
    "job_from_dict",
    "load_job",
    "make_process_fn",
    "plan_job",
    "verify_job",
    "verify_table",
]
