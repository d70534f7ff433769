"""The error codes are part of the MQTT API: each one is documented in the table of docs/mqtt.md
(Errors), and the table documents no other."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from edge_vlm.core.errors import ErrorCode, InputError

MQTT_DOC = Path(__file__).parent.parent / "docs" / "mqtt.md"


def documented_codes() -> set[str]:
    table = MQTT_DOC.read_text().split("\n## Errors\n", 1)[1].split("\n## ", 1)[0]
    rows = [line for line in table.splitlines() if line.startswith("| `") and not line.startswith("| `error`")]
    return {code for row in rows for code in re.findall(r"`([a-z_]+)`", row.split(" | ")[0])}


def test_every_error_code_is_documented_and_no_other() -> None:
    assert documented_codes() == {code.value for code in ErrorCode}


def test_an_error_code_is_its_value_on_the_wire() -> None:
    assert (f"{ErrorCode.NO_FRAME}", str(ErrorCode.NO_FRAME)) == ("no_frame", "no_frame")
    assert InputError("x", code="busy").code is ErrorCode.BUSY
    with pytest.raises(ValueError, match="not_a_code"):
        InputError("x", code="not_a_code")
    with pytest.raises(TypeError, match="needs an error code"):
        InputError("x")
