"""The package registers itself as a Prefect collection."""

from __future__ import annotations

from importlib.metadata import entry_points


def test_prefect_finds_the_collection() -> None:
    """The `prefect.collections` entry point names datatrace_tasks, and Prefect loads it."""
    from prefect.plugins import load_prefect_collections

    (entry,) = [e for e in entry_points(group="prefect.collections") if e.name == "datatrace_tasks"]
    assert entry.value == "datatrace_tasks"
    loaded = load_prefect_collections()
    assert loaded["datatrace_tasks"].TaskManager.__name__ == "TaskManager"
