"""The task unit value and its percentage."""

from __future__ import annotations

from datatrace_tasks.state.units import TaskUnit, UnitStatus, percentage


class TestPercentage:
    def test_ratio(self) -> None:
        """Percentage is processed over total times 100."""
        assert percentage(25, 200) == 12.5

    def test_zero_total(self) -> None:
        """A zero total gives 0 %, never a division error."""
        assert percentage(0, 0) == 0.0

    def test_completed_empty_unit_is_full(self) -> None:
        """A completed unit with nothing to copy shows 100 %."""
        unit = TaskUnit(id="t", name="t", status=UnitStatus.COMPLETED)
        assert unit.percentage == 100.0

    def test_to_dict_is_json_ready(self) -> None:
        """to_dict gives plain values, status as its string."""
        data = TaskUnit(id="a", name="a", total_records=4, processed_records=1).to_dict()
        assert data["status"] == "pending"
        assert data["percentage"] == 25.0


class TestStatus:
    def test_final_states(self) -> None:
        """Completed, failed and paused are resting states; pending and running are not."""
        assert {s for s in UnitStatus if s.is_final} == {
            UnitStatus.COMPLETED,
            UnitStatus.FAILED,
            UnitStatus.PAUSED,
        }
