"""The package root: every public name resolves, and importing it stays cheap."""

from __future__ import annotations

import subprocess
import sys

import datatrace_tasks


class TestPublicNames:
    def test_every_name_in_all_resolves_to_its_object(self) -> None:
        """`__all__` is sorted, and each name imports from the module it lives in."""
        assert datatrace_tasks.__all__ == sorted(datatrace_tasks.__all__)
        for name in datatrace_tasks.__all__:
            value = getattr(datatrace_tasks, name)
            assert getattr(value, "__name__", name) in (name, "Callable")

    def test_an_unknown_name_is_an_attribute_error(self) -> None:
        """A typo fails like any missing attribute, naming what was asked for."""
        try:
            datatrace_tasks.NoSuchThing  # noqa: B018
        except AttributeError as exc:
            assert "NoSuchThing" in str(exc)
        else:
            raise AssertionError("no error for an unknown name")


class TestImportCost:
    def test_the_command_line_does_not_import_prefect_or_the_store(self) -> None:
        """`datatrace --help` loads neither Prefect nor SQLAlchemy (they cost seconds)."""
        code = (
            "import sys, datatrace_tasks.cli.app; "
            "print(sorted(m for m in ('prefect', 'sqlalchemy') if m in sys.modules))"
        )
        out = subprocess.run(
            [sys.executable, "-c", code], capture_output=True, text=True, check=True
        ).stdout
        assert out.strip() == "[]"
