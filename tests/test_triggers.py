from __future__ import annotations

import pytest

from edge_vlm.core.errors import TriggerError
from edge_vlm.ingest.payloads import TriggerRequest, parse_trigger


@pytest.mark.parametrize("payload", [b"", b"  \n", b"{}"])
def test_empty_triggers_ask_for_the_defaults(payload: bytes) -> None:
    assert parse_trigger(payload) == TriggerRequest()


def test_prompt_and_id() -> None:
    assert parse_trigger(b'{"prompt": "Any parcel?", "id": 42}') == TriggerRequest(prompt="Any parcel?", id="42")


@pytest.mark.parametrize(("payload", "says", "request_id"), [
    (b"PRESS", "not JSON: Expecting value at character 0", None),
    (b"\xff\xfe", "not UTF-8", None),
    (b"[1]", "must be a JSON object, got list", None),
    (b'{"id": "r1", "prompt": 3}', "prompt: Input should be a valid string", "r1"),
    (b'{"id": "r2", "prompt": ""}', "prompt: String should have at least 1 character", "r2"),
    (b'{"id": "r3", "camera": "x"}', "camera: Extra inputs are not permitted", "r3"),
    (b'{"id": true}', "id: Input should be a valid string", None),
])
def test_malformed_triggers_say_what_is_wrong(payload: bytes, says: str, request_id: str | None) -> None:
    with pytest.raises(TriggerError) as caught:
        parse_trigger(payload)
    assert says in str(caught.value)
    assert caught.value.request_id == request_id
    assert caught.value.code == "bad_trigger"


@pytest.mark.parametrize(("payload", "says"), [
    (b"[" * 10_000, "refused by the JSON parser"),
    (b'{"id": ' + b"9" * 5000 + b"}", "refused by the JSON parser"),
    (b'{"prompt": "' + b"x" * 20_000 + b'"}', "over the limit of 16384"),
])
def test_hostile_payloads_are_refused_not_crashed_on(payload: bytes, says: str) -> None:
    with pytest.raises(TriggerError, match=says):
        parse_trigger(payload)
