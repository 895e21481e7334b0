"""Prefect flow entrypoints for deployments; each is a thin call into `datatrace_tasks`."""
