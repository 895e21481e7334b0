"""Key values in a checkpoint: JSON-safe, and read back exactly as they were.

JSON has no datetime, decimal or bytes, and its floats and big integers do not
survive every JSON library; such values are stored as `{"$type": text}` so a
resumed scan starts from exactly the key it stopped after.
"""

from __future__ import annotations

import base64
import datetime as dt
from collections.abc import Mapping, Sequence
from decimal import Decimal
from typing import Any

_TAG = "$"


def encode_value(value: Any) -> Any:
    """A JSON-safe form of one key value."""
    if value is None or isinstance(value, bool | str):
        return value
    if isinstance(value, int):
        # Beyond 2**53 some JSON readers round integers: keep those as text.
        return value if abs(value) < 2**53 else {_TAG + "int": str(value)}
    if isinstance(value, float):
        return {_TAG + "float": value.hex()}
    if isinstance(value, Decimal):
        return {_TAG + "decimal": str(value)}
    if isinstance(value, dt.datetime):
        return {_TAG + "datetime": value.isoformat()}
    if isinstance(value, dt.date):
        return {_TAG + "date": value.isoformat()}
    if isinstance(value, dt.time):
        return {_TAG + "time": value.isoformat()}
    if isinstance(value, dt.timedelta):
        return {_TAG + "timedelta": [value.days, value.seconds, value.microseconds]}
    if isinstance(value, bytes | bytearray | memoryview):
        return {_TAG + "bytes": base64.b64encode(bytes(value)).decode("ascii")}
    raise TypeError(f"cannot store a key value of type {type(value).__name__} in a checkpoint")


def decode_value(value: Any) -> Any:
    """The key value `encode_value` was given."""
    if not isinstance(value, Mapping):
        return value
    ((tag, text),) = value.items()
    decoders: dict[str, Any] = {
        "int": int,
        "float": float.fromhex,
        "decimal": Decimal,
        "datetime": dt.datetime.fromisoformat,
        "date": dt.date.fromisoformat,
        "time": dt.time.fromisoformat,
        "timedelta": lambda parts: dt.timedelta(
            days=parts[0], seconds=parts[1], microseconds=parts[2]
        ),
        "bytes": base64.b64decode,
    }
    return decoders[tag.removeprefix(_TAG)](text)


def encode_key(values: Sequence[Any]) -> list[Any]:
    """A key tuple as a JSON-safe list."""
    return [encode_value(v) for v in values]


def decode_key(values: Sequence[Any]) -> tuple[Any, ...]:
    """The key tuple `encode_key` was given."""
    return tuple(decode_value(v) for v in values)
