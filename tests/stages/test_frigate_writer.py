"""Descriptions written back into Frigate (publish.frigate_writer) against a stand-in of Frigate's API
that answers as Frigate's code does: once the event has ended, logged in where Frigate wants it."""

from __future__ import annotations

import threading
from collections.abc import Iterator

import pytest

from edge_vlm.config.sources import FrigateConfig
from edge_vlm.core.errors import ErrorCode
from edge_vlm.publish import frigate_writer
from edge_vlm.publish.frigate_writer import FrigateWriter
from tests.support.frigate_api import FrigateApi, frigate_api

PASSWORD = "frigate-pw-1f2e3d"


class Reports:
    def __init__(self) -> None:
        self.got: list[tuple[str, str, ErrorCode, str]] = []
        self.arrived = threading.Event()

    def __call__(self, camera: str, event_id: str, code: ErrorCode, message: str) -> None:
        self.got.append((camera, event_id, code, message))
        self.arrived.set()


@pytest.fixture
def api(monkeypatch: pytest.MonkeyPatch) -> Iterator[FrigateApi]:
    monkeypatch.setattr(frigate_writer, "POLL_S", 0.1)
    with frigate_api() as server:
        yield server


def writer(api: FrigateApi, reports: Reports, **settings: object) -> FrigateWriter:
    config = FrigateConfig.model_validate({"enabled": True, "api_url": api.url, "write_descriptions": True,
                                           **settings})
    made = FrigateWriter(config, PASSWORD if config.username else None, reports)
    made.start()
    return made


def test_a_description_is_written_once_its_event_has_ended(api: FrigateApi) -> None:
    reports = Reports()
    written = writer(api, reports)
    try:
        written.offer("porch", "e1", "A person with a parcel.")  # Frigate stores it only once it has a snapshot
        with api.changed:
            assert api.changed.wait_for(lambda: api.requests.count("GET /api/events/e1") >= 2, 5)
        api.events["e1"] = None  # now stored, still tracked: Frigate would overwrite what is written now
        with api.changed:
            assert api.changed.wait_for(lambda: api.requests.count("GET /api/events/e1") >= 4, 5)
        assert api.descriptions == {}
        api.events["e1"] = 1767225600.0
        assert api.wait_for_description("e1") == "A person with a parcel."
    finally:
        written.stop()
    assert reports.got == []


def test_a_description_given_again_replaces_the_one_waiting_to_be_written(api: FrigateApi) -> None:
    reports = Reports()
    written = writer(api, reports)
    try:
        api.events["e2"] = None  # still tracked: both wait
        written.offer("porch", "e2", "A person.")
        with api.changed:
            assert api.changed.wait_for(lambda: api.requests.count("GET /api/events/e2") >= 1, 5)
        written.offer("porch", "e2", "Bob, with a parcel.")  # described again: a name came
        api.events["e2"] = 1767225600.0
        assert api.wait_for_description("e2") == "Bob, with a parcel."
        with api.changed:  # a third description, given while nothing waits: written too
            written.offer("porch", "e2", "Bob, leaving.")
            assert api.changed.wait_for(lambda: api.descriptions["e2"] == "Bob, leaving.", 5)
    finally:
        written.stop()
    assert api.requests.count("POST /api/events/e2/description") == 2 and reports.got == []


def test_frigates_login_is_used_and_renewed_and_a_password_never_shown(
        api: FrigateApi, caplog: pytest.LogCaptureFixture) -> None:
    reports = Reports()
    api.users["edge"] = PASSWORD
    api.events.update(e2=1.0, e3=2.0)
    written = writer(api, reports, username="edge", password_env="FRIGATE_PASSWORD")
    try:
        written.offer("porch", "e2", "first")
        assert api.wait_for_description("e2") == "first"
        api.expire_tokens()  # its JWT ran out: refused, logged in again, written
        written.offer("porch", "e3", "second")
        assert api.wait_for_description("e3") == "second"
    finally:
        written.stop()
    assert [r for r in api.requests if r.startswith("POST /api/login")] == ["POST /api/login"] * 2
    assert reports.got == []
    assert PASSWORD not in caplog.text


def test_a_refused_login_and_an_unknown_event_are_reported(api: FrigateApi, caplog: pytest.LogCaptureFixture,
                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    reports = Reports()
    api.users["edge"] = "another password"
    written = writer(api, reports, username="edge", password_credential="frigate")
    try:
        written.offer("porch", "e4", "text")
        assert reports.arrived.wait(5)
        camera, event_id, code, message = reports.got[0]
        assert (camera, event_id, code) == ("porch", "e4", ErrorCode.FRIGATE_WRITE_FAILED)
        assert "login as 'edge' refused: HTTP 401" in message and PASSWORD not in message
    finally:
        written.stop()

    reports = Reports()
    written = writer(api, reports)
    api.users.clear()
    try:
        monkeypatch.setattr(frigate_writer, "GIVE_UP_S", 0.3)
        written.offer("porch", "gone", "text")  # no snapshot, no recording: Frigate keeps no such event
        assert reports.arrived.wait(5)
        assert "HTTP 404: Frigate does not know the event" in reports.got[0][3]
        written.offer("porch", "a b/c", "text")  # an id is a path segment, whatever it holds
        with api.changed:
            assert api.changed.wait_for(lambda: "GET /api/events/a%20b%2Fc" in api.requests, 5)
    finally:
        written.stop()
    assert PASSWORD not in caplog.text


def test_writing_back_needs_the_api_and_a_password_needs_a_user() -> None:
    with pytest.raises(ValueError, match=r"write_descriptions needs frigate\.api_url"):
        FrigateConfig.model_validate({"write_descriptions": True})
    for half in ({"password_env": "FRIGATE_PASSWORD"}, {"username": "edge"}):
        with pytest.raises(ValueError, match=r"frigate\.username and its password .* go together"):
            FrigateConfig.model_validate({"api_url": "http://frigate:8971", **half})


def test_an_event_that_never_ends_is_given_up_on_and_said(api: FrigateApi, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(frigate_writer, "GIVE_UP_S", 0.3)
    reports = Reports()
    api.events["parked"] = None
    written = writer(api, reports)
    try:
        written.offer("drive", "parked", "A car.")
        assert reports.arrived.wait(5)
    finally:
        written.stop()
    assert reports.got[0][3] == ("Frigate event parked: description not written back: the event had not ended 0 s "
                                 "after its description")
    assert api.descriptions == {}
