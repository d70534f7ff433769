"""10,000 generated bad inputs (tests/reliability/bad_inputs.py says which): the daemon never dies,
every input gets the error it should, its memory stays bounded, and a good image afterwards is described.

The daemon runs as its own process, so that its memory is its own and a crash would show. The inputs
come in 20 batches of 500, each made by Hypothesis with a fixed seed (reproducible in CI): each batch
is published, then every answer waited for. Answers are checked per topic, as a multiset of error
codes; requests carry ids, which their answers must echo (those whose reply_to no answer may go to
are answered on the default response topic).
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from hypothesis import HealthCheck, Phase, given, seed, settings

from tests.reliability.bad_inputs import CAMERAS, BadInput, categories
from tests.reliability.conftest import DaemonSecrets, SecretScan, secret_config
from tests.reliability.daemon_process import DaemonProcess
from tests.reliability.figures import report
from tests.support import images
from tests.support.broker import Mosquitto
from tests.support.mqtt import Message, Recorder
from tests.test_daemon import wait_until

BATCHES = 20
BATCH_SIZE = 500
RSS_GROWTH_MAX_MB = 100.0  # generous: a decoded 20000x20000 image alone would be 1200 MB
ANSWER_WAIT_S = 60.0

pytestmark = [pytest.mark.mqtt, pytest.mark.timeout(300)]


def generate(batch: int) -> list[BadInput]:
    """One batch: each kind of bad input in its share, from Hypothesis with a fixed seed."""
    made: list[BadInput] = []
    for number, (quota, strategy) in enumerate(categories().values()):

        @seed(batch * 100 + number)
        @settings(max_examples=quota, database=None, deadline=None, phases=[Phase.generate],
                  suppress_health_check=list(HealthCheck))
        @given(strategy)
        def collect(bad: BadInput) -> None:
            made.append(bad)

        collect()
    return made


@dataclass
class Expected:
    """The answers a batch must get: by id for requests, else as a multiset of (topic, code)."""

    by_id: dict[str, tuple[str, BadInput]] = field(default_factory=dict)
    rest: Counter[tuple[str, str | None]] = field(default_factory=Counter)

    def add(self, bad: BadInput, topic: str, request_id: str) -> None:
        if bad.request_id:
            self.by_id[request_id] = (topic, bad)
        else:
            self.rest[topic, bad.code] += 1

    @property
    def total(self) -> int:
        return len(self.by_id) + sum(self.rest.values())

    def check(self, batch: int, answers: list[Message]) -> int:
        """Assert that ``answers`` are exactly the expected ones; how many were "busy" instead."""
        rest: Counter[tuple[str, str | None]] = Counter()
        by_id: dict[str, tuple[str, str]] = {}
        for message in answers:
            answer = message.json()
            if answer["id"] in self.by_id:
                assert answer["id"] not in by_id, f"batch {batch}: answered twice: {answer}"
                by_id[answer["id"]] = (message.topic, answer["error"])
            else:
                rest[message.topic, answer["error"]] += 1
        assert rest == self.rest, f"batch {batch}: missing {self.rest - rest}, unexpected {rest - self.rest}"
        busy = 0
        for request_id, (topic, bad) in self.by_id.items():
            got = by_id.get(request_id)
            assert got is not None, f"batch {batch}: request {request_id} ({bad.kind}) not answered"
            busy += got == (topic, "busy") and bad.queued
            assert got == (topic, bad.code) or (got == (topic, "busy") and bad.queued), (request_id, bad, got)
        return busy


def test_10000_bad_inputs_all_answered_daemon_alive_memory_bounded(
        broker: Mosquitto, make_recorder: Callable[..., Recorder], secret_scan: SecretScan,
        daemon_secrets: DaemonSecrets, tmp_path: Path) -> None:
    config = secret_config(broker.port, list(CAMERAS), daemon_secrets,
                           limits={"inbound_queue": 10_000, "inbound_queue_mb": 512})
    base, prefix = config.base_topic, config.discovery.prefix
    status = f"{base}/{config.node_id}/status"
    recorder = secret_scan.watch(make_recorder(broker.port, [
        f"{base}/+/error", f"{base}/response/#", f"{base}/+/event", status,
        f"{base}/{config.node_id}/diagnostics", f"{prefix}/#"]))

    def is_answer(message: Message) -> bool:
        return (message.topic.endswith("/error") or message.topic == f"{base}/response"
                or message.topic.startswith(f"{base}/response/"))

    started = time.monotonic()
    kinds: Counter[str] = Counter()
    codes: Counter[str] = Counter()
    busy = 0
    rss_mb: list[float] = []
    generating_s = 0.0
    with DaemonProcess(config, daemon_secrets, tmp_path, secret_scan) as daemon:
        recorder.wait_for(status, lambda m: m.payload == b"online", timeout=30)
        before = daemon.status()
        # The cameras whose sources hold secrets, triggered: they fail (nothing listens) without showing them.
        for camera in ("porch", "gate", "yard"):
            recorder.publish(f"{base}/{camera}/trigger", b"")
            assert recorder.wait_for(f"{base}/{camera}/error").json()["error"] == "camera_unavailable"

        for batch in range(BATCHES):
            began = time.monotonic()
            inputs = generate(batch)
            generating_s += time.monotonic() - began
            assert len(inputs) == BATCH_SIZE
            mark = len(recorder.messages)
            expected = Expected()
            sent = []
            for number, bad in enumerate(inputs):
                request_id = f"b{batch}-{number}"
                payload = bad.filled(base, prefix, request_id)
                sent.append(recorder.client.publish(f"{base}/{bad.topic}", payload, qos=1))
                kinds[bad.kind] += 1
                codes[str(bad.code)] += 1
                expected.add(bad, f"{base}/{bad.answer}", request_id)
            for info in sent:
                info.wait_for_publish(ANSWER_WAIT_S)

            def answers(mark: int = mark) -> list[Message]:
                return [m for m in recorder.messages[mark:] if is_answer(m)]

            wait_until(lambda total=expected.total: len(answers()) >= total,  # type: ignore[misc]
                       timeout=ANSWER_WAIT_S)
            busy += expected.check(batch, answers())
            assert daemon.alive
            rss_mb.append(daemon.status()["VmRSS"] / 1024)

        # A refused trigger is a failed step on its camera's event entity; no job started (a job's first step
        # is always "pending").
        steps = [m.json()["event_type"] for m in recorder.messages if m.topic.endswith("/event")]
        assert set(steps) <= {"failed"}, "a bad input became a job"
        mark = len(recorder.messages)
        recorder.publish(f"{base}/front_door/snapshot", images.sample("front_door"))
        described = recorder.wait_for(f"{base}/front_door/event",
                                      lambda m: m.index >= mark and m.json()["event_type"] == "described").json()
        assert described["description"] == "1 person; 1 face visible; daylight"
        after = daemon.status()
        assert daemon.alive
        assert daemon.stop() == 0

    figures = {
        "inputs": sum(kinds.values()), "answered": sum(codes.values()),
        "codes": dict(sorted(codes.items())), "answered_busy_instead": busy, "kinds": len(kinds),
        "rss_mb_before": round(before["VmRSS"] / 1024, 1), "rss_mb_after": round(after["VmRSS"] / 1024, 1),
        "rss_mb_max_between_batches": round(max(rss_mb), 1), "peak_rss_mb": round(after["VmHWM"] / 1024, 1),
        "generating_s": round(generating_s, 1), "duration_s": round(time.monotonic() - started, 1),
    }
    report("bad_inputs", figures)
    report("bad_inputs_kinds", dict(sorted(kinds.items())))
    assert sum(kinds.values()) == BATCHES * BATCH_SIZE
    assert (after["VmHWM"] - before["VmRSS"]) / 1024 < RSS_GROWTH_MAX_MB
