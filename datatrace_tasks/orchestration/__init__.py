"""Prefect orchestration: the flow, hooks, leases, limits, scale-out, the run lifecycle."""
