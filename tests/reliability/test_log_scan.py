"""The log scan itself: it finds a secret wherever it shows (a log argument, a traceback, an MQTT
payload or topic, a subprocess's log), so that its silence in the other tests means something."""

from __future__ import annotations

import logging
from collections.abc import Callable

import pytest

from tests.reliability.conftest import CapturedLog, SecretScan
from tests.support.broker import Mosquitto
from tests.support.mqtt import Recorder

SECRET = "s3cr3t-never-shown"

pytestmark = pytest.mark.mqtt


def scan() -> tuple[SecretScan, logging.Logger, CapturedLog]:
    handler = CapturedLog()
    logger = logging.getLogger("tests.reliability.scan_self_test")
    logger.addHandler(handler)
    logger.propagate = False
    logger.setLevel(logging.DEBUG)
    found = SecretScan(handler)
    found.hide(SECRET)
    return found, logger, handler


def fail() -> None:
    raise ValueError(f"bad password {SECRET}")


def test_a_secret_in_a_log_argument_or_a_traceback_is_found() -> None:
    found, logger, handler = scan()
    try:
        logger.debug("connecting with %s", f"user:{SECRET}")
        assert len(found.leaks()) == 1
        try:
            fail()
        except ValueError:
            logger.exception("failed")  # the message is clean; the traceback is not
        assert len(found.leaks()) == 2
        assert all("<SECRET>" in leak and SECRET not in leak for leak in found.leaks())
    finally:
        logger.removeHandler(handler)


def test_a_secret_on_mqtt_or_in_a_subprocess_log_is_found(broker: Mosquitto,
                                                          make_recorder: Callable[..., Recorder]) -> None:
    found, logger, handler = scan()
    logger.removeHandler(handler)
    recorder = found.watch(make_recorder(broker.port, ["scan_self_test/#"]))
    recorder.publish("scan_self_test/clean", b"nothing here")
    recorder.publish(f"scan_self_test/{SECRET}", b"in the topic")
    recorder.publish("scan_self_test/payload", f'{{"url": "rtsp://admin:{SECRET}@cam"}}')
    recorder.wait_for("scan_self_test/payload")
    found.add_text("daemon log", f"INFO x: opening rtsp://admin:{SECRET}@cam\n")
    assert len(found.leaks()) == 3


def test_a_short_secret_is_refused() -> None:
    found, _, _ = scan()
    with pytest.raises(ValueError, match="8 characters"):
        found.hide("1234")
