"""Database URLs are shown masked everywhere."""

from __future__ import annotations

import pytest

from datatrace_tasks.exceptions import ConfigError
from datatrace_tasks.urls import describe, mask_text, mask_url, parse_url


class TestMasking:
    def test_mask_url(self) -> None:
        """A URL shows as user:***@host, never with its password."""
        assert (
            mask_url("mysql+pymysql://app:p%40ss@db:3306/x") == "mysql+pymysql://app:***@db:3306/x"
        )

    def test_mask_text_in_free_text(self) -> None:
        """A URL with a password inside a driver message is masked too."""
        text = "failed: mysql+pymysql://root:topsecret@10.0.0.1/db (1045)"
        assert "topsecret" not in mask_text(text)
        assert "root:***@10.0.0.1" in mask_text(text)

    def test_bad_url_is_a_config_error_without_password(self) -> None:
        """An unparsable URL is a ConfigError that does not echo a password."""
        with pytest.raises(ConfigError) as info:
            parse_url("mysql+pymysql://u:topsecret@host:notaport/db")
        assert "topsecret" not in str(info.value)

    def test_describe_names_host_and_database(self) -> None:
        """describe() names backend, host, port and database for error messages."""
        assert describe("postgresql+psycopg://u:pw@h:5432/app") == "postgresql at h:5432/app"
