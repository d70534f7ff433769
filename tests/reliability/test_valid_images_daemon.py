"""Every valid image of the catalogue (tests/support/valid_images.py: every kind JPEG and PNG carry,
EXIF orientations 1-8, 1x1 to 10000x1) published to a running daemon: each one is described, upright,
by the same analyzer worker (none crashes it), and the daemon serves on. Before, a 1x1 JPEG killed it."""

from __future__ import annotations

import pytest

from tests.conftest import app_config
from tests.reliability.figures import report
from tests.support.broker import Mosquitto
from tests.support.valid_images import catalogue
from tests.test_daemon import Daemon, Recorders, started, topic, wait_until, watch

pytestmark = [pytest.mark.mqtt, pytest.mark.timeout(600)]


def test_every_valid_image_is_described_upright_by_one_worker(
        broker: Mosquitto, make_daemon: Daemon, make_recorder: Recorders) -> None:
    config = app_config(broker.port)
    recorder = watch(make_recorder, broker, config)
    service = make_daemon(config)
    started(recorder, config)
    worker = getattr(service.backend, "worker_pid", None)
    assert worker is not None
    results, errors = topic(config, "front_door", "result"), topic(config, "front_door", "error")
    made = catalogue()
    sizes = []

    def outcomes() -> int:
        return len(recorder.on(results)) + len(recorder.on(errors))

    for image in made:  # one by one: each gets its own outcome, none is coalesced
        before = outcomes()
        recorder.publish(topic(config, "front_door", "snapshot"), image.data)
        wait_until(lambda before=before: outcomes() > before)  # type: ignore[misc]
        assert image.expected is not None
        sizes.append((image.name, [image.expected.shape[1], image.expected.shape[0]]))
    described = [m.json() for m in recorder.on(results)]
    same_worker = getattr(service.backend, "worker_pid", None) == worker
    report("valid_images_daemon", {"images": len(made), "described": len(described),
                                   "errors": len(recorder.on(errors)), "same_worker": same_worker})
    assert recorder.on(errors) == []
    assert [(name, r["image_size"]) for (name, _), r in zip(sizes, described, strict=True)] == sizes  # upright
    assert same_worker  # the analyzer's worker described them all: none crashed it
