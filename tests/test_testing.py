"""datatrace_tasks.testing: the in-memory reporter and the throwaway store users test with."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import inspect

from datatrace_tasks.exceptions import UnitPaused
from datatrace_tasks.testing import MemoryReporter, temporary_store


class TestMemoryReporter:
    def test_keeps_what_the_store_would(self) -> None:
        """Total, progress, checkpoint and verification are kept; every report is recorded."""
        reporter = MemoryReporter()
        assert (reporter.processed, reporter.checkpoint) == (0, None)
        reporter.set_total(10)
        reporter.report(4, {"last_key": [4], "rows": 4})
        reporter.report(10, {"last_key": [10], "rows": 10})
        reporter.set_verification({"ok": True})
        assert (reporter.total, reporter.processed) == (10, 10)
        assert reporter.checkpoint == {"last_key": [10], "rows": 10}
        assert reporter.reports == [(4, {"last_key": [4], "rows": 4}), (10, reporter.checkpoint)]
        assert reporter.verification == {"ok": True}
        assert not reporter.should_stop()

    def test_a_resume_starts_from_its_checkpoint(self) -> None:
        """Built with a checkpoint, the reporter starts at its row count."""
        reporter = MemoryReporter({"last_key": [300], "rows": 300})
        assert (reporter.processed, reporter.checkpoint) == (300, {"last_key": [300], "rows": 300})

    def test_stop_after_pauses_keeping_the_checkpoint(self) -> None:
        """Report number `stop_after` keeps its checkpoint, then raises UnitPaused."""
        reporter = MemoryReporter(stop_after=2)
        reporter.report(1, {"rows": 1})
        assert not reporter.should_stop()
        with pytest.raises(UnitPaused):
            reporter.report(2, {"rows": 2})
        assert reporter.should_stop()
        assert (reporter.processed, reporter.checkpoint) == (2, {"rows": 2})

    def test_lose_last_checkpoint_drops_the_stopping_report(self) -> None:
        """As a crash between commit and checkpoint save: the stopping report is not kept."""
        reporter = MemoryReporter(stop_after=2, lose_last_checkpoint=True)
        reporter.report(1, {"rows": 1})
        with pytest.raises(UnitPaused):
            reporter.report(2, {"rows": 2})
        assert (reporter.processed, reporter.checkpoint) == (1, {"rows": 1})
        assert reporter.reports == [(1, {"rows": 1}), (2, {"rows": 2})]


class TestTemporaryStore:
    def test_a_migrated_store_whose_file_goes_away(self) -> None:
        """The store's tables exist inside the block; its folder is gone after it."""
        with temporary_store() as store:
            tables = set(inspect(store.engine).get_table_names())
            assert {"sync_tasks", "task_unit_runtimes", "task_unit_events"} <= tables
            assert store.list_tasks() == []
            path = Path(str(store.engine.url.database))
            assert path.is_file()
        assert not path.parent.exists()

    def test_a_given_url_is_used_and_kept(self, tmp_path: Path) -> None:
        """With a URL, the store is made there and its database stays after the block."""
        url = f"sqlite:///{tmp_path / 'mine.db'}"
        with temporary_store(url) as store:
            assert store.url == url
        assert (tmp_path / "mine.db").is_file()
