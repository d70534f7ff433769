"""The HTTP API through the official client libraries (issue 17): Ollama's and OpenAI's Python
clients against the running daemon, its backend the opencv one behind a gate (the board's runtime
is not needed to answer as Ollama and OpenAI do); the NPU path in test_http_api_npu.py."""

from __future__ import annotations

import base64
import json
import logging
import signal
import socket
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import ollama
import openai
import pytest

from edge_vlm.core.errors import ConfigError
from edge_vlm.core.slots import MAX_REQUESTS
from edge_vlm.service import Service
from tests.conftest import app_config
from tests.support import images
from tests.support.backends import GATE_TIMEOUT_S, GatedBackend
from tests.support.broker import Mosquitto
from tests.support.http_api import KEY, KEY_ENV, PORCH, PORCH_TEXT, Api, data_uri, raw_request, wait_until
from tests.support.http_server import serve
from tests.support.mqtt import Recorder
from tests.support.notify import DaemonProcess, NotifySocket, ready, reloading, write_config
from tests.test_cameras import online, watch

pytestmark = pytest.mark.mqtt

Daemon = Callable[..., Service]
def test_the_ollama_client_chats_and_generates_with_an_image_streamed_or_not(make_api: Callable[..., Api]) -> None:
    api = make_api()
    client = api.ollama()
    asked = [{"role": "user", "content": "Who is at the door?", "images": [PORCH]}]

    answer = client.chat(model="edge-vlm", messages=asked)
    assert (answer.message.role, answer.message.content, answer.done) == ("assistant", PORCH_TEXT, True)
    assert api.backend.prompts[-1] == "Who is at the door?"
    streamed = list(client.chat(model="edge-vlm:latest", messages=asked, stream=True))
    assert "".join(chunk.message.content or "" for chunk in streamed).startswith(PORCH_TEXT) and streamed[-1].done
    generated = client.generate(model="edge-vlm", prompt="Describe it.", images=[PORCH])
    assert (generated.response or "").startswith(PORCH_TEXT)
    assert api.backend.prompts[-1] == "Describe it."

    assert [m.model for m in client.list().models] == ["edge-vlm"]
    assert "vision" in (client.show("edge-vlm").capabilities or [])
    with pytest.raises(ollama.ResponseError) as unknown:
        client.chat(model="llava", messages=asked)
    assert unknown.value.status_code == 404 and "model 'llava' not found" in unknown.value.error


def test_the_openai_client_chats_with_an_image_streamed_or_not(make_api: Callable[..., Api]) -> None:
    api = make_api()
    client = api.openai()
    asked: Any = [{"role": "system", "content": "Be brief."},
                  {"role": "user", "content": [{"type": "text", "text": "Who is at the door?"},
                                               {"type": "image_url", "image_url": {"url": data_uri(PORCH)}}]}]

    completion = client.chat.completions.create(model="edge-vlm", messages=asked)
    assert completion.choices[0].message.content == PORCH_TEXT
    assert completion.choices[0].finish_reason == "stop"
    assert api.backend.prompts[-1] == "system: Be brief.\nWho is at the door?"
    stream = client.chat.completions.create(model="edge-vlm", messages=asked, stream=True)
    assert "".join(chunk.choices[0].delta.content or "" for chunk in stream).startswith(PORCH_TEXT)
    assert [m.id for m in client.models.list()] == ["edge-vlm"]

    with pytest.raises(openai.APIStatusError) as json_asked:  # asked for, not ignored: opencv writes no JSON
        client.chat.completions.create(model="edge-vlm", messages=asked, response_format={"type": "json_object"})
    assert json_asked.value.status_code == 502 and "not the JSON asked for" in json_asked.value.message
    xml: Any = {"type": "xml"}
    with pytest.raises(openai.BadRequestError) as unknown_format:
        client.chat.completions.create(model="edge-vlm", messages=asked, response_format=xml)
    assert 'a JSON answer is format: "json"' in unknown_format.value.message
    with pytest.raises(openai.BadRequestError) as fetched:  # no URL is fetched
        client.chat.completions.create(model="edge-vlm", messages=[{"role": "user", "content": [
            {"type": "text", "text": "What is it?"}, {"type": "image_url", "image_url": {"url": "http://x/a.jpg"}}]}])
    assert "nor an http(s) URL of a host in http.image_url_hosts" in fetched.value.message


def test_several_images_are_described_together_as_a_numbered_grid(make_api: Callable[..., Api]) -> None:
    """LLM Vision's frames and Frigate's thumbnails: every image sent, in a grid in their order (each
    made at most 1024 px on its long side), the prompt saying how to read it; one that will not
    decode is named."""
    api = make_api()
    wide, small = images.jpeg(1920, 1080, seed=3), images.png(64, 48, seed=4)
    parts: Any = [{"type": "text", "text": "Image 1:"}, {"type": "image_url", "image_url": {"url": data_uri(PORCH)}},
                  {"type": "text", "text": "Image 2:"}, {"type": "image_url", "image_url": {"url": data_uri(small)}},
                  {"type": "text", "text": "Image 3:"}, {"type": "image_url", "image_url": {"url": data_uri(wide)}},
                  {"type": "text", "text": "What happened?"}]

    answer = api.openai().chat.completions.create(model="edge-vlm", messages=[{"role": "user", "content": parts}])
    said = (answer.choices[0].message.content or "").split("; ")
    assert [part[:3] for part in said if part[1:3] == ": "] == ["1: ", "2: ", "3: "], said  # each picture's own
    frame = api.backend.frames[-1]
    assert frame.clip is not None and (frame.clip.sent, frame.clip.grid) == (True, (2, 2, 3))
    width, height = frame.size[0] // 2, frame.size[1] // 2  # cells the size of the last image (as decoded)
    assert width <= 1024 and height * 16 == width * 9
    assert not frame.pixels[height:, width:].any()  # the fourth cell is empty
    # the square porch fitted into its cell's top left, not stretched: black to its right
    porch_row = frame.pixels[height // 4:height]
    assert porch_row[:, :height].any() and not porch_row[:, height + 2:width].any()
    assert api.backend.prompts[-1] == ("The image is a grid of the 3 pictures sent, 2 across and 2 down, read left to "
                                       "right and top to bottom, each labelled with its number in the order they were "
                                       "sent. Image 1:\nImage 2:\nImage 3:\nWhat happened?")

    api.ollama().generate(model="edge-vlm", prompt="What?", images=[PORCH, small])  # an icon last
    assert api.backend.frames[-1].size == (2 * 512, 512)  # cells the size of the largest: the porch's
    with pytest.raises(ollama.ResponseError) as broken:
        api.ollama().generate(model="edge-vlm", prompt="What?", images=[PORCH, b"\xff\xd8 not a JPEG", PORCH])
    assert broken.value.status_code == 400 and broken.value.error.startswith("image 2 of 3: ")
    with pytest.raises(ollama.ResponseError) as many:
        api.ollama().generate(model="edge-vlm", prompt="What?", images=[PORCH] * 17)
    assert many.value.status_code == 400 and "17 images: at most 16 a request" in many.value.error


def test_image_urls_are_fetched_from_the_allowed_hosts_only(make_api: Callable[..., Api]) -> None:
    """http.image_url_hosts: an image_url of a host listed is fetched by the board (mixed with data
    URIs, in order); any other host is refused before anything is fetched, a redirect to one is not
    followed, and a body past the payload limit is cut off (413)."""
    with serve() as camera:
        api = make_api(image_url_hosts=[f"127.0.0.1:{camera.server_address[1]}"])
        other = camera.url.replace("127.0.0.1", "localhost")  # the same server, by a name that is not allowed

        def ask(*urls: str) -> Any:
            parts = [{"type": "image_url", "image_url": {"url": url}} for url in urls]
            messages: Any = [{"role": "user", "content": [*parts, {"type": "text", "text": "What?"}]}]
            return api.openai().chat.completions.create(model="edge-vlm", messages=messages)

        assert ask(f"{camera.url}/snapshot.jpg").choices[0].message.content
        assert api.backend.frames[-1].source_size == (320, 240)  # the camera server's JPEG
        assert ask(data_uri(PORCH), f"{camera.url}/snapshot.jpg").choices[0].message.content
        assert api.backend.frames[-1].clip is not None and api.backend.frames[-1].clip.grid == (2, 1, 2)
        fetched = len(camera.seen_auth)
        with pytest.raises(openai.BadRequestError, match=r"nor an http\(s\) URL of a host in http\.image_url_hosts"):
            ask(f"{other}/snapshot.jpg")
        with pytest.raises(openai.BadRequestError, match=r"redirects to http://localhost:.*not followed"):
            ask(f"{camera.url}/redirect?to={other}/snapshot.jpg")
        assert len(camera.seen_auth) == fetched + 1  # the redirect only: neither other-host URL was fetched
        with pytest.raises(openai.APIStatusError) as huge:
            ask(f"{camera.url}/huge.jpg")
        assert huge.value.status_code == 413 and "sends more than" in huge.value.message


def test_a_client_that_takes_only_a_url_has_the_key_in_its_path(make_api: Callable[..., Api]) -> None:
    """Home Assistant's Ollama integration asks for a URL and sends no header of ours."""
    api = make_api()
    with ollama.Client(host=f"{api.url}/k/{KEY}") as client:
        answer = client.chat(model="edge-vlm", messages=[{"role": "user", "content": "Who?", "images": [PORCH]}])
        assert (answer.message.content or "").startswith(PORCH_TEXT)
        assert [m.model for m in client.list().models] == ["edge-vlm"]
    with ollama.Client(host=f"{api.url}/k/{KEY}x") as wrong, pytest.raises(ollama.ResponseError) as refused:
        wrong.list()
    assert refused.value.status_code == 401 and KEY not in refused.value.error
    # a stale header does not spoil the key in the path; a trailing slash is no redirect (which would drop it)
    assert httpx.get(f"{api.url}/k/{KEY}/api/tags", headers={"Authorization": "Bearer old"}).status_code == 200
    assert httpx.get(f"{api.url}/k/{KEY}/api/tags/").status_code == 404


def test_the_opencv_backend_says_it_needs_an_image(make_api: Callable[..., Api]) -> None:
    with pytest.raises(openai.BadRequestError) as refused:
        make_api().openai().chat.completions.create(model="edge-vlm", messages=[{"role": "user", "content": "Hi"}])
    assert "the opencv backend answers questions about an image only" in refused.value.message


def test_a_wrong_key_is_401_and_health_needs_none(make_api: Callable[..., Api]) -> None:
    api = make_api()
    with pytest.raises(openai.AuthenticationError) as refused:
        api.openai(key="wrong").models.list()
    assert refused.value.status_code == 401 and refused.value.code == "invalid_api_key"
    with pytest.raises(ollama.ResponseError) as also:
        api.ollama(key="wrong").list()
    assert also.value.status_code == 401 and "a valid API key is needed" in also.value.error
    assert api.get("/healthz") == (200, {"status": "ok"})
    assert api.get("/readyz") == (200, {"ready": True, "model_loaded": True, "broker_connected": True})


def test_a_request_over_the_limit_is_413_before_it_is_read(make_api: Callable[..., Api]) -> None:
    api = make_api(max_request_mb=1)
    big = images.jpeg(3000, 2000, quality=100)  # about 2 MB, 2.7 MB as base64
    assert len(big) > 1_000_000
    with pytest.raises(openai.APIStatusError) as refused:
        api.openai().chat.completions.create(model="edge-vlm", messages=[{"role": "user", "content": [
            {"type": "text", "text": "What is it?"}, {"type": "image_url", "image_url": {"url": data_uri(big)}}]}])
    assert refused.value.status_code == 413
    with pytest.raises(ollama.ResponseError) as also:
        api.ollama().chat(model="edge-vlm", messages=[{"role": "user", "content": "What?", "images": [big]}])
    assert also.value.status_code == 413 and "http.max_request_mb" in also.value.error
    assert api.backend.prompts == []  # nothing reached the NPU


def test_a_client_with_too_many_requests_waiting_gets_429_with_retry_after(make_api: Callable[..., Api]) -> None:
    api = make_api(max_waiting_per_client=2)
    api.backend.gate.clear()  # the NPU busy with the first request
    client = api.openai()
    asked: Any = [{"role": "user", "content": [{"type": "text", "text": "Who is at the door?"},
                                               {"type": "image_url", "image_url": {"url": data_uri(PORCH)}}]}]
    with ThreadPoolExecutor(2) as pool:
        waiting = [pool.submit(client.chat.completions.create, model="edge-vlm", messages=asked) for _ in range(2)]
        assert api.backend.entered.wait(GATE_TIMEOUT_S), "the first request never reached the backend"
        wait_until(lambda: api.service.scheduler.depth == 1, "the second request waiting")

        with pytest.raises(openai.RateLimitError) as refused:
            client.chat.completions.create(model="edge-vlm", messages=asked)
        assert refused.value.response.headers["retry-after"] == "5"
        assert "2 requests of yours already wait or run (http.max_waiting_per_client)" in refused.value.message
        with pytest.raises(ollama.ResponseError) as also:
            api.ollama().chat(model="edge-vlm", messages=[{"role": "user", "content": "Who?", "images": [PORCH]}])
        assert also.value.status_code == 429

        api.backend.gate.set()
        assert [(w.result(GATE_TIMEOUT_S).choices[0].message.content or "")[:len(PORCH_TEXT)] for w in waiting] == [
            PORCH_TEXT, PORCH_TEXT]
    assert len(api.backend.prompts) == 2  # the refused ones never reached the NPU


def test_a_full_request_queue_is_429_with_retry_after(make_api: Callable[..., Api], broker: Mosquitto,
                                                     make_recorder: Callable[..., Recorder]) -> None:
    """HTTP requests share their queue with MQTT requests that bring an image: when 32 wait there,
    an HTTP request is refused at once, 429 with Retry-After, and nothing else is lost."""
    api = make_api()
    api.backend.gate.clear()  # the NPU busy with the first request
    config = api.service.config
    recorder = make_recorder(broker.port, [f"{config.base_topic}/request/#"])
    image = base64.b64encode(images.png(64, 48)).decode()  # small: 33 of them are described in the end

    def ask(n: int) -> None:
        recorder.publish(f"{config.base_topic}/request", json.dumps({"id": f"m{n}", "image": image, "prompt": "Who?"}))

    def queued(n: int) -> Callable[[], bool]:
        return lambda: api.service.scheduler.depth == n

    ask(0)
    assert api.backend.entered.wait(GATE_TIMEOUT_S), "the first request never reached the backend"
    for n in range(1, 1 + MAX_REQUESTS):  # one at a time: each past its capture, whose own queue is short
        ask(n)
        wait_until(queued(n), f"request {n} queued")

    asked: Any = [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": data_uri(PORCH)}}, "Who?"]}]
    with pytest.raises(openai.RateLimitError) as refused:
        api.openai().chat.completions.create(model="edge-vlm", messages=asked)
    assert refused.value.response.headers["retry-after"] == "5" and refused.value.message.endswith(
        f"{MAX_REQUESTS} requests already wait with an image of their own (HTTP and MQTT): ask again later")
    assert [m.model for m in api.ollama().list().models] == ["edge-vlm"]  # the API serves on
    api.backend.gate.set()
    wait_until(lambda: len(api.backend.prompts) == 1 + MAX_REQUESTS, "every MQTT request answered")


def test_a_client_that_goes_away_has_its_waiting_job_taken_from_the_queue(make_api: Callable[..., Api]) -> None:
    api = make_api(max_waiting_per_client=4)
    api.backend.gate.clear()
    client = api.ollama()
    asked = [{"role": "user", "content": "Who is at the door?", "images": [PORCH]}]
    with ThreadPoolExecutor(1) as pool:
        first = pool.submit(client.chat, model="edge-vlm", messages=asked)
        assert api.backend.entered.wait(GATE_TIMEOUT_S), "the first request never reached the backend"
        with raw_request(api, "/api/chat", {"model": "edge-vlm", "stream": False, "messages": [
                {"role": "user", "content": "And now?", "images": [base64.b64encode(PORCH).decode()]}]}):
            wait_until(lambda: api.service.scheduler.depth == 1, "the second request waiting")
        # the connection closed: its job leaves the queue
        wait_until(lambda: api.service.scheduler.depth == 0, "the abandoned request taken from the queue")
        api.backend.gate.set()
        assert (first.result(GATE_TIMEOUT_S).message.content or "").startswith(PORCH_TEXT)
    assert api.backend.prompts == ["Who is at the door?"]  # the abandoned one never reached the NPU


def test_a_client_that_goes_away_before_its_question_reaches_the_worker_has_it_never_sent(
        make_api: Callable[..., Api], caplog: pytest.LogCaptureFixture) -> None:
    """Begun by the runner but not yet on the worker (held here at the test's gate; on a board:
    waiting for a restarting worker, or between two questions): the abort fails the job's next
    question at once, instead of finding nothing to stop."""
    caplog.set_level(logging.INFO)
    api = make_api()
    api.backend.gate.clear()
    with raw_request(api, "/api/chat", {"model": "edge-vlm", "stream": False, "messages": [
            {"role": "user", "content": "Who?", "images": [base64.b64encode(PORCH).decode()]}]}):
        assert api.backend.entered.wait(GATE_TIMEOUT_S), "the request never reached the backend"
    wait_until(lambda: "the HTTP client went away before the answer" in caplog.text, "the request cancelled")
    api.backend.gate.set()
    wait_until(lambda: "cancelled: aborted: the HTTP client went away" in caplog.text, "the job failed at once")
    assert not api.backend.busy  # no question went to the worker


def test_a_client_that_goes_away_while_its_image_is_fetched_has_its_job_dropped(
        make_api: Callable[..., Api], caplog: pytest.LogCaptureFixture) -> None:
    """Cancelled before its job was queued (its image still coming): the job, when it comes, fails
    ``cancelled`` without reaching the backend."""
    caplog.set_level(logging.INFO)
    with serve() as camera:
        api = make_api(image_url_hosts=[f"127.0.0.1:{camera.server_address[1]}"])
        held = {"type": "image_url", "image_url": {"url": f"{camera.url}/held.jpg"}}
        asked = {"role": "user", "content": [{"type": "text", "text": "Who is it?"}, held]}
        with raw_request(api, "/v1/chat/completions", {"model": "edge-vlm", "messages": [asked]}):
            assert camera.holding.wait(GATE_TIMEOUT_S), "the image never asked for"
        wait_until(lambda: "the HTTP client went away before the answer" in caplog.text, "the request cancelled")
        camera.released.set()
        wait_until(lambda: "cancelled before it ran: the HTTP client went away" in caplog.text, "the job dropped")
    assert "Who is it?" not in api.backend.prompts


def test_a_port_that_is_taken_stops_the_start_and_says_so(broker: Mosquitto, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(KEY_ENV, KEY)
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        config = app_config(broker.port, cameras=[{"id": "porch"}],
                            http={"enabled": True, "port": port, "api_key_env": KEY_ENV})
        service = Service(config, password=None)
        with pytest.raises(ConfigError) as refused:
            service.start()
        assert str(refused.value) == (f"http: cannot listen on 127.0.0.1:{port}: the port is taken (another "
                                      "server, Ollama itself?)")
        service.stop()


def test_an_empty_or_short_key_stops_the_start(broker: Mosquitto, monkeypatch: pytest.MonkeyPatch) -> None:
    """An EnvironmentFile line ``EDGE_VLM_API_KEY=`` would otherwise let in anyone who sends ``Bearer``."""
    config = app_config(broker.port, cameras=[{"id": "porch"}],
                        http={"enabled": True, "port": 0, "api_key_env": KEY_ENV})
    for key, problem in (("", "is unset, empty or shorter than 16 characters"), ("short", "shorter than 16"),
                         ("with a space in it, long enough", "holds characters other than")):
        monkeypatch.setenv(KEY_ENV, key)
        with pytest.raises(ConfigError, match=problem):
            Service(config, password=None)


def test_what_is_not_ours_is_answered_in_the_apis_shape_and_a_chunked_body_is_cut_off(
        make_api: Callable[..., Api]) -> None:
    api = make_api(max_request_mb=1)
    assert api.get("/api/nothing") == (404, {"error": "Not Found"})
    assert api.get("/v1/nothing")[1]["error"]["message"] == "Not Found"

    def chunks() -> Iterator[bytes]:  # no Content-Length: the body is counted as it comes
        yield b'{"model": "edge-vlm", "messages": [{"role": "user", "content": "'
        for _ in range(30):
            yield b"x" * 65_536
        yield b'"}]}'

    answer = httpx.post(f"{api.url}/api/chat", content=chunks(), headers={"Authorization": f"Bearer {KEY}"},
                        timeout=GATE_TIMEOUT_S)
    assert answer.status_code == 413 and "over the limit of 1000000 bytes" in answer.json()["error"]
    assert api.backend.prompts == []


def test_a_stop_answers_the_waiting_request_and_lets_the_running_one_finish(make_api: Callable[..., Api]) -> None:
    api = make_api()
    api.backend.gate.clear()
    client = api.openai()
    asked: Any = [{"role": "user", "content": [{"type": "text", "text": "Who is at the door?"},
                                               {"type": "image_url", "image_url": {"url": data_uri(PORCH)}}]}]
    with ThreadPoolExecutor(3) as pool:
        running = pool.submit(client.chat.completions.create, model="edge-vlm", messages=asked)
        assert api.backend.entered.wait(GATE_TIMEOUT_S)
        waiting = pool.submit(client.chat.completions.create, model="edge-vlm", messages=asked)
        wait_until(lambda: api.service.scheduler.depth == 1, "the second request waiting")

        stopping = pool.submit(api.service.stop, 30)
        with pytest.raises(openai.InternalServerError) as cancelled:  # 503, at once, in OpenAI's shape
            waiting.result(GATE_TIMEOUT_S)
        assert cancelled.value.status_code == 503
        assert "the daemon stopped before this job ran" in cancelled.value.message
        api.backend.gate.set()  # the job in flight finishes within the stop's grace, and is answered
        assert (running.result(GATE_TIMEOUT_S).choices[0].message.content or "").startswith(PORCH_TEXT)
        stopping.result(GATE_TIMEOUT_S)  # no error
    assert api.service.stopped


def test_a_reload_serves_on_the_same_port_with_the_new_settings(
        tmp_path: Path, broker: Mosquitto, notify_socket: NotifySocket,
        daemons: Callable[..., DaemonProcess]) -> None:
    """SIGHUP: the old service (and its server) stops, the new one listens on the same port."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    http = {"enabled": True, "port": port, "api_key_env": KEY_ENV}
    config = app_config(broker.port, cameras=[{"id": "porch"}], http=http)
    config_file = tmp_path / "edge_vlm.yaml"
    write_config(config_file, config)
    daemon = daemons(config_file, tmp_path / "daemon.log", NOTIFY_SOCKET=notify_socket.address, **{KEY_ENV: KEY})
    notify_socket.wait_for(ready)
    with openai.OpenAI(base_url=f"http://127.0.0.1:{port}/v1", api_key=KEY, max_retries=0) as client:
        assert [m.id for m in client.models.list()] == ["edge-vlm"]

        write_config(config_file, app_config(broker.port, cameras=[{"id": "porch"}], http={**http, "model": "board"}))
        daemon.signal(signal.SIGHUP)
        notify_socket.wait_for(reloading)
        last = notify_socket.matching(reloading)[-1]
        notify_socket.wait_for(ready, after=last.index)
        assert [m.id for m in client.models.list()] == ["board"]
    assert "Reloaded" in daemon.text() and "cannot listen" not in daemon.text()
    daemon.signal(signal.SIGTERM)
    assert daemon.wait() == 0


def test_http_requests_take_turns_with_the_cameras_jobs(
        broker: Mosquitto, make_daemon: Daemon, make_recorder: Callable[..., Recorder],
        monkeypatch: pytest.MonkeyPatch) -> None:
    """docs/http-api.md, Order on the NPU: the requests' queue takes its turn with each camera's, in the
    order their work came; a request never waits for more than one job of each camera."""
    monkeypatch.setenv(KEY_ENV, KEY)
    config = app_config(broker.port, cameras=[{"id": "porch"}, {"id": "yard"}],
                        http={"enabled": True, "port": 0, "api_key_env": KEY_ENV})
    recorder = watch(make_recorder, broker, config)
    backend = GatedBackend()
    api = Api(make_daemon(config, backend), backend)
    online(recorder, config)
    asked: Any = [{"role": "user", "content": [{"type": "text", "text": ""},
                                               {"type": "image_url", "image_url": {"url": data_uri(PORCH)}}]}]

    def snapshot(camera: str) -> None:
        recorder.publish(f"{config.base_topic}/{camera}/snapshot", PORCH)

    with ThreadPoolExecutor(2) as pool:
        snapshot("porch")  # runs, held at the gate
        assert backend.entered.wait(GATE_TIMEOUT_S)
        waiting = []
        for step, what in enumerate(["porch", "first", "second", "yard"], start=1):
            if what in ("porch", "yard"):
                snapshot(what)
            else:
                asked[0]["content"][0]["text"] = f"the {what} request"
                waiting.append(pool.submit(api.openai().chat.completions.create, model="edge-vlm",
                                           messages=json.loads(json.dumps(asked))))
            wait_until(lambda step=step: api.service.scheduler.depth == step, f"{what} waiting")  # type: ignore[misc]
        backend.gate.set()
        for answer in waiting:
            answer.result(GATE_TIMEOUT_S)
    recorder.count(f"{config.base_topic}/yard/result", 1)
    served = [prompt if frame.camera == "" else frame.camera for frame, prompt in zip(backend.frames, backend.prompts,
                                                                                     strict=True)]
    assert served == ["porch", "porch", "the first request", "yard", "the second request"]
