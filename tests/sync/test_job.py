"""Job files: the keys the issue names, ${VAR} expansion, one clear error per problem."""

from __future__ import annotations

from pathlib import Path

import pytest

from datatrace_tasks.exceptions import JobFileInvalid
from datatrace_tasks.sync.job import load_job

GOOD = """\
name: sakila-copy
source: mysql+pymysql://app:${DT_SRC_PW}@db1:3306/sakila
target: postgresql+psycopg://app:s3cret@db2:5432/copy
tables: ["*"]
exclude: ["film_text"]
concurrency: 2
batch_size: 1000
error_strategy: pause
retries: 0
write_mode: truncate
throttle_rows_per_second: null
"""


def write(tmp_path: Path, text: str) -> Path:
    """Write a job file and return its path."""
    path = tmp_path / "job.yaml"
    path.write_text(text, encoding="utf-8")
    return path


class TestLoadJob:
    """load_job accepts the documented keys and explains every rejection."""

    def test_loads_every_key_and_masks_passwords(
        self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """A full job file loads; the URLs show `***` for passwords, also in repr."""
        monkeypatch.setenv("DT_SRC_PW", "hunter2")
        job = load_job(write(tmp_path, GOOD))
        assert (job.concurrency, job.batch_size, job.write_mode) == (2, 1000, "truncate")
        assert job.source_url.password == "hunter2"
        assert job.masked_source == "mysql+pymysql://app:***@db1:3306/sakila"
        assert job.masked_target == "postgresql+psycopg://app:***@db2:5432/copy"
        assert "hunter2" not in repr(job) and "s3cret" not in repr(job)

    def test_defaults(self, tmp_path: Path) -> None:
        """Only name, source and target are required; the rest has the issue's defaults."""
        job = load_job(
            write(tmp_path, "name: j\nsource: mysql+pymysql://u@h/s\ntarget: sqlite://\n")
        )
        assert job.tables == ["*"] and job.concurrency == 4 and job.batch_size == 5000
        assert (job.retries, job.write_mode, job.throttle_rows_per_second) == (2, "upsert", None)

    def test_unknown_key_is_named(self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
        """An unknown key is an error that names it."""
        monkeypatch.setenv("DT_SRC_PW", "x")
        with pytest.raises(JobFileInvalid, match="unknown key 'batchsize'"):
            load_job(write(tmp_path, GOOD + "batchsize: 10\n"))

    def test_missing_variable_is_named(
        self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """A ${VAR} that is not set is an error naming the variable."""
        monkeypatch.delenv("DT_SRC_PW", raising=False)
        with pytest.raises(JobFileInvalid, match="environment variable DT_SRC_PW is not set"):
            load_job(write(tmp_path, GOOD))

    def test_malformed_yaml_gives_the_line(self, tmp_path: Path) -> None:
        """Broken YAML is reported with its line, not as a traceback."""
        with pytest.raises(JobFileInvalid, match="not valid YAML at line 3, column 1"):
            load_job(write(tmp_path, "name: j\nsource: [unclosed\n"))

    @pytest.mark.parametrize(
        ("line", "message"),
        [
            ("concurrency: 0", "concurrency: Input should be greater than or equal to 1"),
            ("write_mode: merge", "write_mode: Input should be 'upsert', 'append' or 'truncate'"),
            ("throttle_rows_per_second: 0", "throttle_rows_per_second: Input should be greater"),
        ],
    )
    def test_bad_values_are_named(
        self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, line: str, message: str
    ) -> None:
        """A value out of range names its key and the rule."""
        monkeypatch.setenv("DT_SRC_PW", "x")
        with pytest.raises(JobFileInvalid, match=message):
            load_job(write(tmp_path, GOOD + line + "\n"))

    def test_bad_url_does_not_echo_the_password(self, tmp_path: Path) -> None:
        """An unparsable URL is named by its key; its text (and password) is not shown."""
        text = "name: j\nsource: 'not a url:pw-secret'\ntarget: sqlite://\n"
        with pytest.raises(JobFileInvalid, match="source is not a valid SQLAlchemy URL") as err:
            load_job(write(tmp_path, text))
        assert "pw-secret" not in str(err.value)

    def test_missing_file_and_non_mapping(self, tmp_path: Path) -> None:
        """A missing file and a YAML list are both JobFileInvalid."""
        with pytest.raises(JobFileInvalid, match="cannot read it"):
            load_job(tmp_path / "nope.yaml")
        with pytest.raises(JobFileInvalid, match="expected a mapping"):
            load_job(write(tmp_path, "- a\n- b\n"))
