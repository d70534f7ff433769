"""The automations and script of docs/home-assistant.md and the blueprint, pasted into a real Home
Assistant as written.

A phone (tests.support.ha_phone: a companion app registered through its own API, whose pushes reach
a local gateway) is ``notify.mobile_app_my_phone``, the name the documented examples use; the camera
is ``front_door`` on base topic ``edge_vlm``, as in the docs. The daemon's backend is the opencv one
behind a gate (tests.support.backends.GatedBackend, open unless a test holds it), so a test can keep
a job in flight as a board's NPU would (issue 12: every automation works as pasted, with the picture,
on the oldest and the newest release).
"""

from __future__ import annotations

import io
import time
import urllib.request
from collections.abc import Iterator
from typing import Any

import pytest
from PIL import Image

from edge_vlm.frames.clip import span_words
from tests.ha.conftest import HaDaemon
from tests.support import ha, ha_phone, images
from tests.support.backends import GATE_TIMEOUT_S, GatedBackend
from tests.support.frigate_api import FrigateApi, frigate_api
from tests.support.frigate_payloads import event_message, review_message, review_segment
from tests.support.ha import HomeAssistant
from tests.support.ha_automations import automation, documented_yaml, save_blueprint, script
from tests.support.ha_phone import Notification, PushGateway

pytestmark = [
    pytest.mark.ha,
    pytest.mark.timeout(int((ha.START_TIMEOUT_S if all(r.installed for r in ha.releases()) else ha.INSTALL_TIMEOUT_S)
                            + 120)),
]

PHONE = "notify.mobile_app_my_phone"


@pytest.fixture(scope="session")
def my_phone(home_assistant: HomeAssistant) -> Iterator[PushGateway]:
    with ha_phone.phone(home_assistant, "my_phone") as (action, gateway):
        assert action == PHONE
        yield gateway


@pytest.fixture
def frigate() -> Iterator[FrigateApi]:
    with frigate_api() as api:
        yield api


@pytest.fixture
def daemon_settings(frigate: FrigateApi) -> dict[str, Any]:
    # the parcel rule of docs/configuration.md (Alerts), matched by what the opencv backend says of a frame
    # with a person; the driveway describes Frigate's alerts (docs/cameras.md, Frigate)
    # front_door keeps the snapshots it receives for clips (docs/cameras.md, Clips)
    return {"cameras": [{"id": "front_door", "alerts": [{"name": "parcel", "keywords": ["person"]}],
                         "clip": {"seconds": 10, "fps": 10}},
                        {"id": "driveway", "frigate": {"reviews": ["alert"], "snapshot": "http"}}],
            "frigate": {"enabled": True, "api_url": frigate.url}}


@pytest.fixture
def daemon_backend() -> GatedBackend:
    backend = GatedBackend()
    backend.gate.set()
    return backend


def _fetch(hass: HomeAssistant, path: str) -> bytes:
    """What the companion app gets for a notification's image: the path, with the user's login."""
    request = urllib.request.Request(f"{hass.url}{path}", headers={"Authorization": f"Bearer {hass.token}"})
    with urllib.request.urlopen(request, timeout=ha.HTTP_TIMEOUT_S) as response:
        body: bytes = response.read()
    return body


def _snapshot(daemon: HaDaemon, image: str | bytes) -> str:
    """Publish the sample named ``image`` (or the image) as front_door's snapshot; the id of the job
    it became (its pending)."""
    since = len(daemon.recorder.messages)
    daemon.recorder.publish(daemon.topic("front_door", "snapshot"),
                            images.sample(image) if isinstance(image, str) else image)
    pending = daemon.recorder.wait_for(daemon.topic("front_door", "event"), lambda m: m.index >= since
                                       and m.json()["event_type"] == "pending")
    return str(pending.json()["id"])


def _result(daemon: HaDaemon, job: str) -> dict[str, Any]:
    result: dict[str, Any] = daemon.recorder.wait_for(daemon.topic("front_door", "result"),
                                                      lambda m: m.json()["id"] == job).json()
    return result


def _described_image(daemon: HaDaemon, job: str) -> bytes:
    """The frame edge_vlm published as job ``job``'s described image (the message before its result)."""
    _result(daemon, job)
    messages = list(daemon.recorder.messages)
    at = next(m.index for m in messages if m.topic == daemon.topic("front_door", "result") and m.json()["id"] == job)
    return next(m.payload for m in reversed(messages[:at]) if m.topic == daemon.topic("front_door", "described_image"))


def _steps(phone: PushGateway, job: str, since: int) -> list[tuple[str, str | None]]:
    """The (message, image) of each notification for ``job``."""
    return [(n["message"], n["data"].get("image")) for n in phone.tagged(f"edge_vlm-front_door-{job}", since)]


def _tag(notification: Notification) -> str:
    return str((notification.get("data") or {}).get("tag", ""))


def test_the_readme_notification_shows_the_frame_then_its_description(
        ha_daemon: HaDaemon, my_phone: PushGateway, daemon_backend: GatedBackend) -> None:
    daemon, hass = ha_daemon, ha_daemon.hass
    with automation(hass, documented_yaml("Front door \u2013 notify with the description")):
        first = _snapshot(daemon, "front_door")  # a snapshot: not an origin this automation notifies
        _result(daemon, first)
        since = len(my_phone.notifications)

        hass.call("button", "press", entity_id=daemon.entity("front_door_describe"))

        described = my_phone.wait_for(lambda n: _tag(n).startswith("edge_vlm-front_door-")
                                      and n["message"] != "Someone's there, looking…", since,
                                      what="the notification with the description")
        job = _tag(described).removeprefix("edge_vlm-front_door-")
        result = _result(daemon, job)
        assert result["origin"] == "trigger"
        assert _steps(my_phone, job, since) == [
            ("Someone's there, looking…", "/api/image_proxy/image.edge_vlm_front_door_image"),
            (result["description"], "/api/image_proxy/image.edge_vlm_front_door_described_image")]
        assert described["title"] == "Front door"
        assert {_tag(n) for n in my_phone.notifications[since:]} == {f"edge_vlm-front_door-{job}"}
        frame = _described_image(daemon, job)
        assert _fetch(hass, described["data"]["image"]) == frame

        # issue 12, finding 4: a later job's pending replaces the camera's image, not the described one
        daemon_backend.gate.clear()
        daemon_backend.entered.clear()
        later = _snapshot(daemon, "garden_night")
        assert daemon_backend.entered.wait(GATE_TIMEOUT_S), "the later job never reached the backend"
        ha.wait_until(lambda: _fetch(hass, "/api/image_proxy/image.edge_vlm_front_door_image") != frame,
                      what="the camera's image showing the later frame")
        assert _fetch(hass, described["data"]["image"]) == frame
        daemon_backend.gate.set()
        _result(daemon, later)
        assert daemon.problems() == []


def test_the_readme_alert_shows_the_description_and_its_frame(ha_daemon: HaDaemon, my_phone: PushGateway) -> None:
    daemon, hass = ha_daemon, ha_daemon.hass
    with automation(hass, documented_yaml("Front door \u2013 parcel alert")):
        since = len(my_phone.notifications)

        job = _snapshot(daemon, "front_door")

        alert = my_phone.wait_for(lambda n: n.get("title") == "Parcel at the front door", since,
                                  what="the parcel alert's notification")
        result = _result(daemon, job)
        assert result["alerts"] == ["parcel"]
        assert alert["message"] == result["description"]
        assert _fetch(hass, alert["data"]["image"]) == _described_image(daemon, job)
        assert daemon.problems() == []


def test_the_doorbell_automation_describes_what_happened_before_it_rang(
        ha_daemon: HaDaemon, my_phone: PushGateway, daemon_backend: GatedBackend) -> None:
    """Pasted with the notification automation: a person came and went before the bell; the answer
    covers them, and the notification's picture is the clip's grid of key frames."""
    daemon, hass = ha_daemon, ha_daemon.hass
    with automation(hass, documented_yaml("Front door \u2013 notify with the description")), \
            automation(hass, documented_yaml("Doorbell \u2013 describe what happened before it rang")):
        yard = images.scene(640, 360, seed=3)
        for pixels in (yard, images.with_square(yard), yard):  # each described as it comes
            _result(daemon, _snapshot(daemon, images.encode(pixels)))
            time.sleep(0.2)  # the scene's timeline: snapshots 1/fps apart at least, or one is not kept
        since = len(my_phone.notifications)

        hass.call("input_boolean", "turn_on", entity_id="input_boolean.doorbell_button")  # the bell rings

        described = my_phone.wait_for(lambda n: n.get("title") == "Front door" and n["message"] not in (
            "Someone's there, looking…", "clear_notification"), since, what="the doorbell's description")
        job = _tag(described).removeprefix("edge_vlm-front_door-")
        result = _result(daemon, job)
        assert result["origin"] == "trigger" and result["clip"]["grid"] == [2, 1]  # the person, and now
        clip = daemon_backend.frames[-1].clip  # the last job described: the doorbell's
        assert clip is not None and round(clip.span_s, 2) == result["clip"]["span_s"]
        asked = f"Who came to the Front door in {span_words(clip.span_s)}, and what did they do?"
        assert result["prompt"].endswith(asked)
        assert described["message"] == result["description"]
        shown = _fetch(hass, described["data"]["image"])
        assert shown == _described_image(daemon, job)
        assert Image.open(io.BytesIO(shown)).size == tuple(result["image_size"])  # the grid, two frames wide
        hass.call("input_boolean", "turn_off", entity_id="input_boolean.doorbell_button")
        assert daemon.problems() == []


def test_the_readme_script_asks_and_notifies_the_answer(
        ha_daemon: HaDaemon, my_phone: PushGateway, daemon_backend: GatedBackend) -> None:
    """The answer comes after Home Assistant subscribed to the reply topic, as with a board's NPU (the
    docs say the opencv backend can answer before that)."""
    daemon, hass = ha_daemon, ha_daemon.hass
    reply_topic = "edge_vlm/response/ask_front_door"
    with script(hass, documented_yaml("Ask the front door camera")) as entity:
        _result(daemon, _snapshot(daemon, "front_door"))
        daemon_backend.gate.clear()
        daemon_backend.entered.clear()
        since = len(my_phone.notifications)
        log_mark = hass.broker_log.stat().st_size

        hass.call("script", "turn_on", entity_id=entity, variables={"question": "Is anyone at the door?"})

        assert daemon_backend.entered.wait(GATE_TIMEOUT_S), "the request never reached the backend"
        ha.wait_until(lambda: f" {reply_topic}" in hass.broker_log.read_text(errors="replace")[log_mark:],
                      what=f"Home Assistant subscribing to {reply_topic}")
        daemon_backend.gate.set()
        notification = my_phone.wait_for(lambda n: n.get("title") == "Front door", since, what="the answer")
        answer = daemon.recorder.wait_for(reply_topic).json()
        assert answer["prompt"] == "Is anyone at the door?"
        assert notification["message"] == answer["text"]
        assert daemon.problems() == []


def _blueprint(hass: HomeAssistant, **inputs: Any) -> dict[str, Any]:
    return {"alias": "edge_vlm notify (blueprint)",
            "use_blueprint": {"path": save_blueprint(hass), "input": {"camera": "front_door", **inputs}}}


def test_the_blueprint_notifies_a_phone_and_removes_a_superseded_job(
        ha_daemon: HaDaemon, my_phone: PushGateway, daemon_backend: GatedBackend) -> None:
    daemon, hass = ha_daemon, ha_daemon.hass
    with automation(hass, _blueprint(hass, notify_action=PHONE, origins=["snapshot"])):
        since = len(my_phone.notifications)
        daemon_backend.gate.clear()

        running = _snapshot(daemon, "front_door")
        assert daemon_backend.entered.wait(GATE_TIMEOUT_S)
        waiting = _snapshot(daemon, "garden_night")
        newest = _snapshot(daemon, "front_door")
        daemon.recorder.wait_for(daemon.topic("front_door", "event"), lambda m: m.json()["id"] == waiting
                                 and m.json()["event_type"] == "superseded")
        daemon_backend.gate.set()

        my_phone.wait_for(lambda n: _tag(n) == f"edge_vlm-front_door-{newest}" and n["message"] != "Looking…", since,
                          what="the newest job's description")
        image, described_image = ("/api/image_proxy/image.edge_vlm_front_door_image",
                                  "/api/image_proxy/image.edge_vlm_front_door_described_image")
        for job in (running, newest):
            assert _steps(my_phone, job, since) == [("Looking…", image),
                                                    (_result(daemon, job)["description"], described_image)]
        assert _steps(my_phone, waiting, since) == [("Looking…", image), ("clear_notification", None)]
        assert my_phone.tagged(f"edge_vlm-front_door-{running}", since)[0]["title"] == "Front door"
        assert daemon.problems() == []


def test_the_blueprint_notifies_any_notify_action_without_the_image(ha_daemon: HaDaemon) -> None:
    """A persistent notification (any notify action, not only a phone): replaced by the description."""
    daemon, hass = ha_daemon, ha_daemon.hass
    with automation(hass, _blueprint(hass, notify_action="notify.persistent_notification", include_image=False,
                                     origins=["snapshot"], title="At the door")):
        job = _snapshot(daemon, "front_door")

        result = _result(daemon, job)

        def shown() -> dict[str, Any] | None:
            with hass.websocket() as ws:
                notifications: list[dict[str, Any]] = ws.command("persistent_notification/get")
            return next((n for n in notifications if n["notification_id"] == f"edge_vlm-front_door-{job}"
                         and n["message"] == result["description"]), None)

        notification = ha.wait_until(shown, what="the persistent notification with the description")
        assert notification["title"] == "At the door"
        assert daemon.problems() == []


def test_the_frigate_alert_notification_is_updated_in_place_as_the_review_item_grows(
        ha_daemon: HaDaemon, my_phone: PushGateway, frigate: FrigateApi) -> None:
    daemon, hass = ha_daemon, ha_daemon.hass
    review_id = f"{time.time():.6f}-ha{hass.release.version.replace('.', '')}"
    frigate.snapshots.update(p1=images.sample("front_door"), c1=images.sample("driveway"))
    since = len(my_phone.notifications)
    with automation(hass, documented_yaml("Frigate alerts \u2013 notify with the description")):
        daemon.recorder.publish("frigate/events", event_message("0.18", "new", "p1", camera="driveway"))
        first = review_segment("0.18", review_id, "driveway", "alert", {"p1": "person"})
        daemon.recorder.publish("frigate/reviews", review_message("0.18", "new", None, first))
        described = my_phone.wait_for(lambda n: _tag(n) == f"frigate-review-{review_id}", since,
                                      what="the alert's notification")
        # a car comes whose plate Frigate knows: the item grows, and is described again from its picture
        daemon.recorder.publish("frigate/events", event_message("0.18", "new", "c1", camera="driveway", label="car",
                                                               sub_label="Ann's car"))
        grown = review_segment("0.18", review_id, "driveway", "alert", {"p1": "person", "c1": "car-verified"},
                               sub_labels={"c1": "Ann's car"})
        daemon.recorder.publish("frigate/reviews", review_message("0.18", "update", first, grown))
        updated = my_phone.wait_for(lambda n: _tag(n) == f"frigate-review-{review_id}"
                                    and n["message"] != described["message"], since, what="the updated notification")
    results = [m.json() for m in daemon.recorder.on(daemon.topic("driveway", "result"))]
    assert [(r["id"], r["event"]["revision"], r["description"]) for r in results] == [
        (review_id, 0, described["message"]), (review_id, 1, updated["message"])]
    assert described["title"] == "Driveway: person"
    assert sorted(updated["title"].removeprefix("Driveway: ").split(", ")) == ["car", "person"]
    assert updated["data"]["alert_once"] is True
    assert {_tag(n) for n in my_phone.notifications[since:]} == {f"frigate-review-{review_id}"}  # one notification
    assert updated["data"]["image"] == "/api/image_proxy/image.edge_vlm_driveway_described_image"
    assert daemon.problems() == []
