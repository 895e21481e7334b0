"""Checkpoint keys survive JSON exactly."""

from __future__ import annotations

import datetime as dt
import json
from decimal import Decimal
from typing import Any

import pytest

from datatrace_tasks.sync.checkpoint import decode_key, encode_key


class TestKeyCodec:
    """encode_key/decode_key round-trip every key type MySQL can return."""

    @pytest.mark.parametrize(
        "value",
        [
            0,
            -(2**63),
            2**64 - 1,
            "Zoë 😀",
            Decimal("12345678901234567890.000100"),
            0.1,
            dt.datetime(2024, 2, 29, 23, 59, 59, 123456),
            dt.date(1000, 1, 1),
            dt.timedelta(hours=-838, minutes=-59),
            b"\x00\xff",
            True,
        ],
    )
    def test_round_trip_through_json(self, value: Any) -> None:
        """The value read back after json.dumps/loads equals and has the same type."""
        back = decode_key(json.loads(json.dumps(encode_key([value, 1]))))
        assert back == (value, 1) and type(back[0]) is type(value)

    def test_unknown_type_is_refused(self) -> None:
        """A value with no exact JSON form is an error, not a lossy string."""
        with pytest.raises(TypeError, match="cannot store"):
            encode_key([object()])
