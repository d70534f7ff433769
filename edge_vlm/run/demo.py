"""``edge-vlm demo``: the whole daemon on this machine, no board and no broker needed.

It starts an embedded MQTT broker (amqtt, MQTT 3.1.1) on a free loopback port, runs the daemon
with the built-in opencv backend and three cameras, plays Home Assistant's part (discovery, the
sensor states, the "Describe now" button), publishes the sample images that ship with the
package, prints what Home Assistant receives, and stops the daemon cleanly.
"""

from __future__ import annotations

import asyncio
import io
import json
import logging
import socket
import threading
import time
from collections.abc import Callable
from importlib import resources
from typing import Any

import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion, MQTTProtocolVersion
from PIL import Image

from edge_vlm.config.models import AppConfig, CameraConfig
from edge_vlm.config.mqtt import MqttConfig
from edge_vlm.service import Service

WAIT_S = 20.0
SAMPLES = {"front_door": "front_door.jpg", "driveway": "driveway.jpg", "garden": "garden_night.jpg"}


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


class EmbeddedBroker:
    """amqtt's broker on its own event loop thread, listening on loopback only."""

    def __init__(self, port: int) -> None:
        self.port = port
        self._loop = asyncio.new_event_loop()
        self._broker: Any = None
        self._thread = threading.Thread(target=self._loop.run_forever, name="demo-broker", daemon=True)

    def start(self) -> None:
        from amqtt.broker import Broker  # noqa: PLC0415 - optional dependency, the demo extra

        async def start() -> Any:
            # amqtt's Broker must be built inside its running loop.
            broker = Broker({
                "listeners": {"default": {"type": "tcp", "bind": f"127.0.0.1:{self.port}"}},
                "plugins": {"amqtt.plugins.authentication.AnonymousAuthPlugin": {"allow_anonymous": True}},
            })
            await broker.start()
            return broker

        self._thread.start()
        self._broker = asyncio.run_coroutine_threadsafe(start(), self._loop).result(WAIT_S)

    def stop(self) -> None:
        if self._broker is not None:
            asyncio.run_coroutine_threadsafe(self._broker.shutdown(), self._loop).result(WAIT_S)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(WAIT_S)


class HomeAssistantView:
    """Plays Home Assistant: follows discovery and the state topics it points at."""

    def __init__(self, port: int, config: AppConfig) -> None:
        self._messages: dict[str, bytes] = {}
        self._changed = threading.Condition()
        self._client = paho.Client(CallbackAPIVersion.VERSION2, client_id="demo-home-assistant",
                                   protocol=MQTTProtocolVersion.MQTTv311)
        self._client.on_message = self._on_message
        self._client.connect("127.0.0.1", port)
        self._client.subscribe([(f"{config.discovery.prefix}/#", 1), (f"{config.base_topic}/#", 1)])
        self._client.loop_start()

    def _on_message(self, client: paho.Client, userdata: Any, message: paho.MQTTMessage) -> None:
        with self._changed:
            self._messages[message.topic] = bytes(message.payload)
            self._changed.notify_all()

    def wait(self, topic: str, until: Callable[[bytes], bool] = lambda payload: True) -> bytes:
        """The last message on ``topic``, once there is one for which ``until`` holds."""
        with self._changed:
            if not self._changed.wait_for(
                lambda: topic in self._messages and until(self._messages[topic]), WAIT_S,
            ):
                raise TimeoutError(f"nothing arrived on {topic} within {WAIT_S:.0f} s")
            return self._messages[topic]

    def press(self, command_topic: str, payload: str) -> None:
        self._client.publish(command_topic, payload, qos=1).wait_for_publish(WAIT_S)

    def publish(self, topic: str, payload: bytes) -> None:
        self._client.publish(topic, payload, qos=1).wait_for_publish(WAIT_S)

    def close(self) -> None:
        self._client.disconnect()
        self._client.loop_stop()


def _sample(name: str) -> bytes:
    return resources.files("edge_vlm.samples").joinpath(name).read_bytes()


def _stepped_aside(jpeg: bytes, pixels: int = 120) -> bytes:
    """The same scene with its subject moved sideways: something changed, for the motion check."""
    image = Image.open(io.BytesIO(jpeg)).convert("RGB")
    width, height = image.size
    moved = Image.new("RGB", image.size, (90, 90, 90))
    moved.paste(image.crop((0, 0, width - pixels, height)), (pixels, 0))
    out = io.BytesIO()
    moved.save(out, "JPEG", quality=85)
    return out.getvalue()


def _show(ha: HomeAssistantView, service: Service, camera: str, after: bytes | None = None) -> bytes:
    """What Home Assistant shows for ``camera`` once a result other than ``after`` is in."""
    topics = service.topics
    result = ha.wait(topics.camera(camera, "result"), lambda payload: payload != after)
    state = ha.wait(topics.camera(camera, "description"))
    device = json.loads(ha.wait(topics.camera_device_config(camera)))
    attributes = json.loads(ha.wait(topics.camera(camera, "attributes")))
    image = ha.wait(topics.camera(camera, "image"))
    sensor = device["cmps"]["description"]["default_entity_id"]
    print(f"  {sensor} = {state.decode()!r}")
    print(f"      attributes: id {attributes['id']}, backend {attributes['backend']}, "
          f"latency {attributes['latency_ms']:.0f} ms")
    print(f"  {device['cmps']['image']['default_entity_id']} = JPEG, {len(image):,} bytes")
    return result


def _play(ha: HomeAssistantView, service: Service) -> None:
    topics = service.topics
    node = json.loads(ha.wait(topics.node_device_config))
    cameras = [json.loads(ha.wait(topics.camera_device_config(c))) for c in SAMPLES]
    entities = len(node["cmps"]) + sum(len(c["cmps"]) for c in cameras)
    names = ", ".join([node["dev"]["name"]] + [c["dev"]["name"] for c in cameras])
    print(f"Home Assistant discovered {1 + len(cameras)} devices ({names}) with {entities} entities.\n")
    results = {}
    for camera, sample in SAMPLES.items():
        data = _sample(sample)
        print(f"[{camera}] snapshot {sample} ({len(data):,} bytes) on {topics.camera(camera, 'snapshot')}")
        ha.publish(topics.camera(camera, "snapshot"), data)
        results[camera] = _show(ha, service, camera)
    print("\n[front_door] the visitor stepped aside: a new snapshot")
    ha.publish(topics.camera("front_door", "snapshot"), _stepped_aside(_sample(SAMPLES["front_door"])))
    _show(ha, service, "front_door", after=results["front_door"])
    print('\n[driveway] a trigger from an automation, with its own id and question')
    print("  (the opencv backend answers the same questions whatever the prompt; NPU models answer it)")
    ha.press(topics.camera("driveway", "trigger"), json.dumps({"id": "demo-1", "prompt": "Is the gate open?"}))
    _show(ha, service, "driveway", after=results["driveway"])
    print("\n[garden] a broken JPEG arrives")
    ha.publish(topics.camera("garden", "snapshot"), _sample(SAMPLES["garden"])[:3000])
    error = json.loads(ha.wait(topics.camera("garden", "error")))
    print(f"  error on {topics.camera('garden', 'error')}: {error['error']}: {error['message']}")


def run_demo(*, verbose: bool = False) -> int:
    try:
        import amqtt  # noqa: F401, PLC0415
    except ImportError:
        print("edge-vlm demo needs its embedded broker, amqtt: pip install 'amqtt==0.12.1' into edge_vlm's venv "
              "(the demo extra; scripts/demo does it)")
        return 1
    # Without -v only errors: the warnings the demo provokes (a broken JPEG refused) are shown as what
    # Home Assistant receives, on stdout.
    logging.basicConfig(level=logging.INFO if verbose else logging.ERROR,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s", force=True)
    for noisy in ("amqtt", "transitions"):
        logging.getLogger(noisy).setLevel(logging.WARNING if verbose else logging.CRITICAL)
    port = _free_port()
    broker = EmbeddedBroker(port)
    broker.start()
    config = AppConfig(
        node_id="demo",
        mqtt=MqttConfig(port=port, protocol="3.1.1"),
        cameras=[CameraConfig(id=c) for c in SAMPLES],
    )
    print(f"edge_vlm demo: embedded MQTT broker on 127.0.0.1:{port}, built-in opencv backend\n")
    ha = HomeAssistantView(port, config)
    service = Service(config, password=None)
    started = time.monotonic()
    try:
        service.start()
        _play(ha, service)
    except TimeoutError as exc:
        print(f"demo failed: {exc}")
        return 1
    finally:
        service.stop()
        status = ha.wait(service.topics.status, lambda payload: payload == b"offline")
        print(f"\nDaemon stopped; {service.topics.status} = {status.decode()!r}. "
              f"Demo took {time.monotonic() - started:.1f} s.")
        ha.close()
        broker.stop()
    return 0
