"""Secrets stay out of messages, and names that become topic levels or entity ids stay plain.

- ``edge-vlm check`` shows each bad value with its problem, but never one at a secret-looking key,
  and never the credentials of a URL, even ones no URL may hold (a space, a slash).
- A camera's source never puts its password or token into a log line or an error (which becomes
  an MQTT error result): an RTSP URL with credentials written inline, an HTTP bearer token with a
  line break (http.client quotes a refused header value in its exception).
- Ids (camera, node, alert rule, profile, structured field) and what payloads name (a trigger's
  profile, a request's camera, a reply topic) cannot inject a topic level or a wildcard.
"""

from __future__ import annotations

import json
import logging
from typing import Any

import pytest
import yaml

from edge_vlm.config.loader import load_config_text
from edge_vlm.config.models import AppConfig
from edge_vlm.config.sources import HttpSourceConfig, RtspSourceConfig
from edge_vlm.core.contracts import Failure, Reply
from edge_vlm.core.errors import ConfigError, InputError, SourceError
from edge_vlm.core.redact import redact, redact_url
from edge_vlm.core.topics import Topics
from edge_vlm.frames.sources.http import HttpSnapshotSource
from edge_vlm.frames.sources.rtsp import RtspSource
from edge_vlm.ingest.payloads import parse_request, parse_trigger
from edge_vlm.ingest.requests import RequestTopics, read_request
from edge_vlm.mqtt.inbox import Received
from tests.reliability.conftest import SecretScan

SECRET = "hunter2-Zq8x"


@pytest.fixture(autouse=True)
def _hidden(secret_scan: SecretScan) -> None:
    secret_scan.hide(SECRET)


def problems(text: str) -> list[str]:
    with pytest.raises(ConfigError) as caught:
        load_config_text(text)
    return list(caught.value.problems)


def camera_source(source: dict[str, Any]) -> str:
    return yaml.safe_dump({"cameras": [{"id": "porch", "source": source}]})


@pytest.mark.parametrize(("case", "text", "where"), [
    ("a password key", f"cameras: [{{id: a}}]\nmqtt:\n  password: {SECRET}\n", "mqtt.password"),
    ("a passwd key", f"cameras: [{{id: a}}]\nmqtt:\n  passwd: {SECRET}\n", "mqtt.passwd"),
    ("a secret key", f"cameras: [{{id: a}}]\nmqtt:\n  secret: {SECRET}\n", "mqtt.secret"),
    ("an api_key", camera_source({"type": "http", "url": "http://cam/x", "api_key": SECRET}), "source.api_key"),
    ("a token", camera_source({"type": "http", "url": "http://cam/x", "token": SECRET}), "source.token"),
    ("an authorization header", camera_source({"type": "http", "url": "http://cam/x", "authorization": SECRET}),
     "source.authorization"),
    ("credentials in an http URL", camera_source({"type": "http", "url": f"http://admin:{SECRET}@cam/x"}),
     "source.url: 'http://***:***@cam/x'"),
    ("a slash in an rtsp password", camera_source({"type": "http", "url": f"rtsp://admin:a/{SECRET}@cam/x"}),
     "source.url: 'rtsp://***:***@cam/x'"),
    ("a space in an rtsp password", camera_source({"type": "http", "url": f"rtsp://admin:a {SECRET}@cam/x"}),
     "source.url: 'rtsp://***:***@cam/x'"),
    ("an rtsp URL too long", camera_source({"type": "rtsp", "url": f"rtsp://admin:{SECRET}@cam/" + "x" * 2100}),
     "source.url: (a value of 2130 characters)"),  # over 1000 characters: only its length is shown
    ("a token in a query", camera_source({"type": "http", "url": f"http://cam/x?token={SECRET}", "timeout_s": 0}),
     "source.timeout_s"),
])
def test_check_never_prints_a_secret(case: str, text: str, where: str) -> None:
    found = problems(text)
    assert any(where in p for p in found), found
    assert not [p for p in found if SECRET in p]


@pytest.mark.parametrize("url", [
    f"rtsp://admin:{SECRET}@cam:554/s", f"rtsp://admin:a/{SECRET}@cam/s", f"rtsp://admin:a {SECRET}@cam/s",
    f"rtsp://admin:a?{SECRET}#x@cam/s", f"rtsp://admin:{SECRET}@@cam/s", f"http://cam/snap?pwd={SECRET}",
])
def test_urls_are_masked_whatever_the_password_holds(url: str) -> None:
    shown = redact_url(url)
    assert SECRET not in shown
    assert shown.endswith(("@cam:554/s", "@cam/s", "pwd=***"))
    if " " not in url:  # inside a longer text too
        assert SECRET not in redact(f"opening {url} failed")


def test_an_rtsp_streams_password_in_its_url_is_never_logged(secret_scan: SecretScan) -> None:
    config = RtspSourceConfig(type="rtsp", url="rtsp://127.0.0.1:9/live", username="admin", open_timeout_s=1)
    source = RtspSource("porch", config, password=f"a/{SECRET}")  # OpenCV gets it inside the URL
    source.start()
    try:
        record = secret_scan.log.wait_for(lambda r: "stream unavailable" in r.getMessage())
        with pytest.raises(SourceError) as caught:
            source.grab()
    finally:
        source.stop()
    assert "cannot connect to rtsp://***:***@127.0.0.1:9/live" in record.getMessage()
    assert SECRET not in str(caught.value)


@pytest.mark.parametrize("token", [f"{SECRET}\n", f"{SECRET}\r\nX-Injected: 1", f"x\r{SECRET}"])
def test_an_http_token_that_cannot_be_sent_is_not_shown(token: str) -> None:
    config = HttpSourceConfig(type="http", url="http://127.0.0.1:9/snap.jpg", auth="bearer",
                              password_env="CAMERA_TOKEN", timeout_s=1)
    source = HttpSnapshotSource("gate", config, password=token, max_bytes=10**6, max_pixels=10**7, min_long_side=None)
    with pytest.raises(SourceError) as caught:
        source.grab()
    message = str(caught.value)
    assert SECRET not in message
    assert "the secret in $CAMERA_TOKEN holds a character an HTTP header cannot carry" in message


def test_http_failures_show_no_credentials(secret_scan: SecretScan) -> None:
    for auth in ("basic", "bearer", "digest"):
        config = HttpSourceConfig(type="http", url="http://127.0.0.1:9/snap.jpg", auth=auth, username="admin",
                                  password_env="CAMERA_PASSWORD", timeout_s=1)
        source = HttpSnapshotSource("gate", config, password=SECRET, max_bytes=10**6, max_pixels=10**7,
                                    min_long_side=None)
        with pytest.raises(SourceError) as caught:
            source.grab()
        logging.getLogger("edge_vlm.test").warning("%s", caught.value)  # scanned with the log
        assert "connection refused" in str(caught.value)


# Names that become topic levels and entity ids.

BAD_IDS = ["front/door", "front+", "#", "Front", "café", "", "a" * 65, "-x", "x y", "x\0"]


def config_with(**changes: Any) -> dict[str, Any]:
    data: dict[str, Any] = {"cameras": [{"id": "porch"}]}
    data.update(changes)
    return data


@pytest.mark.parametrize("bad", BAD_IDS)
@pytest.mark.parametrize("where", ["camera id", "node_id", "alert rule", "profile name", "camera profile",
                                   "field name"])
def test_ids_that_become_topic_levels_are_plain(where: str, bad: str) -> None:
    data = {
        "camera id": config_with(cameras=[{"id": bad}]),
        "node_id": config_with(node_id=bad),
        "alert rule": config_with(cameras=[{"id": "porch", "alerts": [{"name": bad, "keywords": ["fox"]}]}]),
        "profile name": config_with(profiles={bad: {"prompt": "What is there?"}}),
        "camera profile": config_with(cameras=[{"id": "porch", "profile": bad}], profiles={bad: {"prompt": "Hi"}}),
        "field name": config_with(profiles={"p": {"prompt": "Count", "fields": {bad: {"type": "integer",
                                                                                        "description": "n"}}}}),
    }[where]
    assert problems(json.dumps(data))  # JSON is YAML


@pytest.mark.parametrize("payload", [
    {"profile": "a/b"}, {"profile": "+"}, {"profile": "#"}, {"profile": "Day"},
])
def test_a_trigger_cannot_name_a_profile_with_topic_characters(payload: dict[str, str]) -> None:
    with pytest.raises(InputError, match="profile"):
        parse_trigger(json.dumps(payload).encode())


@pytest.mark.parametrize("camera", ["front/door", "+", "#", "../x", "Front", "x\u0000"])
def test_a_request_cannot_name_a_camera_with_topic_characters(camera: str) -> None:
    with pytest.raises(InputError, match="camera"):
        parse_request(json.dumps({"camera": camera, "prompt": "Who?"}).encode())


@pytest.mark.parametrize(("reply_to", "code", "problem"), [
    ("answers/#", "bad_reply_topic", "wildcard"), ("answers/+/x", "bad_reply_topic", "wildcard"),
    ("edge_vlm/porch/trigger", "bad_reply_topic", "edge_vlm publishes or listens on"),
    ("homeassistant/sensor/x/config", "bad_reply_topic", "Home Assistant's"),
    ("answers/x", "bad_reply_topic", "not under the reply topics"), ("$SYS/x", "bad_reply_topic", "$ topic"),
    ("answers/\u0000", "bad_reply_topic", "control character"), ("answers/\ud800", "bad_trigger", "reply_to"),
])
def test_a_reply_cannot_go_to_a_wildcard_or_one_of_our_inputs(reply_to: str, code: str, problem: str,
                                                              secret_scan: SecretScan) -> None:
    config = AppConfig.model_validate(config_with())
    message = Received(f"{config.base_topic}/request",
                       json.dumps({"camera": "porch", "prompt": "Who?", "reply_to": reply_to}).encode(),
                       retain=False, received_at=0.0, wall_time=0.0, size=0)
    outcome = read_request(message, RequestTopics.from_config(config, Topics.from_config(config)))

    # Refused, and answered on the default response topic instead of where it asked.
    assert isinstance(outcome, Failure)
    assert (outcome.code, outcome.reply) == (code, Reply(f"{config.base_topic}/response"))
    assert problem in outcome.message


@pytest.mark.parametrize("host", ["a..b", "broker .lan", "x" * 64 + ".lan", "."])
def test_a_broker_host_the_resolver_cannot_take_is_refused_at_check(host: str) -> None:
    """Python raises UnicodeError, not OSError, for such a name: paho's thread would die on it."""
    found = problems(json.dumps(config_with(mqtt={"host": host})))
    assert [p for p in found if "mqtt.host" in p and "not a host name or IP address" in p], found


@pytest.mark.parametrize("host", ["mqtt.lan", "192.168.1.10", "::1", "fe80::1%eth0", "localhost.", "broker"])
def test_ordinary_broker_hosts_are_taken(host: str) -> None:
    assert AppConfig.model_validate(config_with(mqtt={"host": host})).mqtt.host == host
