"""The fake librkllmrt (tests/native) through a small ctypes harness of its own, for both ABIs."""

from __future__ import annotations

import codecs
import ctypes
import itertools
import json
import signal
import subprocess
import sys
import threading
import time
import zlib
from collections.abc import Callable, Iterator
from ctypes import POINTER, Structure, Union, c_bool, c_char_p, c_float, c_int, c_int32, c_uint8, c_void_p
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import numpy.typing as npt
import pytest

from tests.support.native import ABIS, LOG_ENV, build_fake_rkllmrt, write_model_file

ROOT = Path(__file__).resolve().parent.parent
NORMAL, WAITING, FINISH, ERROR = 0, 1, 2, 3
TAGS = (b"<|vision_start|>", b"<|vision_end|>", b"<|image_pad|>")
SUFFIX = " Café … ok"


def struct(name: str, *fields: tuple[str, Any], union: bool = False, anonymous: tuple[str, ...] = ()) -> Any:
    return type(name, (Union if union else Structure,), {"_fields_": list(fields), "_anonymous_": anonymous})


# The harness's own mirror of rkllm.h's layouts (1.3.0, and 1.2.1-1.2.3); sizes checked below.
S, P, PTR = ctypes.c_size_t, c_char_p, c_void_p
Extend = struct("Extend", ("base_domain_id", c_int32), ("embed_flash", ctypes.c_int8),
                ("enabled_cpus_num", ctypes.c_int8), ("enabled_cpus_mask", ctypes.c_uint32), ("n_batch", c_uint8),
                ("use_cross_attn", ctypes.c_int8), ("reserved", c_uint8 * 104))
HEAD = [("model_path", P), *((n, c_int32) for n in ("max_context_len", "max_new_tokens", "top_k", "n_keep")),
        *((n, c_float) for n in ("top_p", "temperature", "repeat_penalty", "frequency_penalty", "presence_penalty")),
        ("mirostat", c_int32), ("mirostat_tau", c_float), ("mirostat_eta", c_float), ("skip_special_token", c_bool)]
PARAM = {"1.2": struct("Param12", *HEAD, ("is_async", c_bool), ("img_start", P), ("img_end", P), ("img_content", P),
                       ("extend_param", Extend)),
         "1.3": struct("Param13", *HEAD, ("ignore_eos_token", c_bool), ("is_async", c_bool), ("extend_param", Extend))}
IMAGE = [("image_embed", POINTER(c_float)), ("n_image_tokens", S), ("n_image", S)]
SIZE = [("image_width", S), ("image_height", S)]
MM = {"1.2": struct("MM12", ("prompt", P), *IMAGE, *SIZE),
      "1.3": struct("MM13", ("prompt", P), ("image", struct("Image13", *IMAGE, ("image_start", P), ("image_end", P),
                                                            ("image_content", P), *SIZE)), ("video", PTR * 9))}
INPUT = {abi: struct(f"Input{abi}", ("role", P), ("enable_thinking", c_bool), ("input_type", c_int),
                     ("u", struct("U", ("prompt_input", P), ("multimodal_input", MM[abi]), union=True)),
                     anonymous=("u",)) for abi in ABIS}
INFER_HEAD = [("mode", c_int), ("lora_params", PTR), ("prompt_cache_params", PTR)]
INFER = {"1.2": struct("Infer12", *INFER_HEAD, ("keep_history", c_int)),
         "1.3": struct("Infer13", *INFER_HEAD, ("sampling_params", PTR), ("keep_history", c_int),
                       ("max_new_tokens", c_int32))}
Perf = struct("Perf", ("prefill_time_ms", c_float), ("prefill_tokens", c_int), ("generate_time_ms", c_float),
              ("generate_tokens", c_int), ("memory_usage_mb", c_float))
Result = struct("Result", ("text", PTR), ("token_id", c_int32), ("last_hidden_layer", PTR * 2), ("logits", PTR * 2),
                ("perf", Perf))
CALLBACK = ctypes.CFUNCTYPE(c_int, POINTER(Result), c_void_p, c_int)
Callbacks13 = struct("Callbacks13", ("result_callback", CALLBACK), *((n, PTR) for n in (
    "result_userdata", "tokenizer_callback", "tokenizer_userdata", "embed_callback", "embed_userdata")))


class Event(NamedTuple):
    state: int
    text: bytes | None
    address: int | None
    token_id: int
    perf: tuple[float, int, float, int, float]


class Runtime:
    """One handle on the fake runtime; every callback is recorded in ``events``."""

    def __init__(self, lib: Path, abi: str) -> None:
        self.abi, self.lib, self.handle = abi, ctypes.CDLL(str(lib)), c_void_p()
        self.lib.rkllm_createDefaultParam.restype = PARAM[abi]
        third = POINTER(Callbacks13) if abi == "1.3" else CALLBACK
        self.lib.rkllm_init.argtypes = [POINTER(c_void_p), POINTER(PARAM[abi]), third]
        self.lib.rkllm_run.argtypes = [c_void_p, POINTER(INPUT[abi]), POINTER(INFER[abi]), c_void_p]
        self.events: list[Event] = []
        self.first_token = threading.Event()
        self.reply: Callable[[int], int] = lambda n: 0  # the callback's return value, given len(events)
        self.callback = CALLBACK(self._on_result)
        self.callbacks = Callbacks13(result_callback=self.callback)

    def _on_result(self, result: Any, userdata: int | None, state: int) -> int:
        r, p = result.contents, result.contents.perf
        text = ctypes.string_at(r.text) if r.text else None
        perf = (p.prefill_time_ms, p.prefill_tokens, p.generate_time_ms, p.generate_tokens, p.memory_usage_mb)
        self.events.append(Event(state, text, r.text, r.token_id, perf))
        self.first_token.set()
        return self.reply(len(self.events))

    def init(self, model: Path | bytes | None, **fields: Any) -> int:
        p = self.lib.rkllm_createDefaultParam()
        p.model_path = bytes(model) if isinstance(model, Path) else model
        p.max_context_len, p.max_new_tokens, p.top_k, p.skip_special_token = 4096, 256, 1, True
        p.extend_param.base_domain_id, p.extend_param.enabled_cpus_mask = 1, 0xF0
        if self.abi == "1.2":
            p.img_start, p.img_end, p.img_content = TAGS
        for key, value in fields.items():
            setattr(p.extend_param if hasattr(Extend, key) else p, key, value)
        third = ctypes.byref(self.callbacks) if self.abi == "1.3" else self.callback
        return int(self.lib.rkllm_init(ctypes.byref(self.handle), ctypes.byref(p), third))

    def run(self, prompt: str, embed: npt.NDArray[np.float32] | None, *, multimodal: bool = True, n_image: int = 1,
            n_tokens: int = 196, size: tuple[int, int] = (392, 392), mode: int = 0, keep_history: int = 0,
            max_new_tokens: int = 0, null: str = "") -> int:
        inp = INPUT[self.abi](role=b"user", input_type=3 if multimodal else 0)
        mm = inp.multimodal_input
        image = mm.image if self.abi == "1.3" else mm
        if multimodal:
            mm.prompt, image.n_image_tokens, image.n_image, (image.image_width, image.image_height) = (
                prompt.encode(), n_tokens, n_image, size)
            image.image_embed = None if embed is None else embed.ctypes.data_as(POINTER(c_float))
            if self.abi == "1.3":
                image.image_start, image.image_end, image.image_content = TAGS
        else:
            inp.prompt_input = prompt.encode()
        infer = INFER[self.abi](mode=mode, keep_history=keep_history)
        if self.abi == "1.3":
            infer.max_new_tokens = max_new_tokens
        args = (None if null == "input" else ctypes.byref(inp), None if null == "infer" else ctypes.byref(infer))
        return int(self.lib.rkllm_run(self.handle, *args, None))

    def kv_cache_size(self) -> int:
        size = c_int(-1)
        assert self.lib.rkllm_get_kv_cache_size(self.handle, ctypes.byref(size)) == 0
        return size.value


def embedding(seed: int) -> npt.NDArray[np.float32]:
    return np.random.default_rng(seed).standard_normal((196, 1536), dtype=np.float32)


def decoded(events: list[Event]) -> str:
    decoder = codecs.getincrementaldecoder("utf-8")()
    parts = [decoder.decode(e.text) for e in events if e.state == NORMAL and e.text is not None]
    return "".join(parts) + decoder.decode(b"", final=True)


def expected(prompt: str, embed: npt.NDArray[np.float32]) -> str:
    tags = "|".join(t.decode() for t in TAGS)
    return (f"Test runtime saw 196 image tokens, signature {zlib.crc32(embed.tobytes()):08x}, tags {tags}, 392x392: "
            f"{prompt.replace('<image>', '').strip()}{SUFFIX}")


@pytest.fixture(scope="session")
def libs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    out = tmp_path_factory.mktemp("rkllmrt")
    return {abi: build_fake_rkllmrt(abi, out) for abi in ABIS}


@pytest.fixture
def model(tmp_path: Path) -> Path:
    return write_model_file(tmp_path / "qwen2-vl-2b.rkllm", embed_dim=1536, image_tokens=196)


@pytest.fixture(params=ABIS)
def rt(request: pytest.FixtureRequest, libs: dict[str, Path], model: Path) -> Iterator[Runtime]:
    runtime = Runtime(libs[request.param], request.param)
    assert runtime.init(model) == 0
    yield runtime
    assert runtime.lib.rkllm_destroy(runtime.handle) == 0


def test_both_abis_build_with_the_documented_sizes(libs: dict[str, Path], monkeypatch: pytest.MonkeyPatch,
                                                   tmp_path: Path) -> None:
    sizes = {abi: [ctypes.sizeof(t[abi]) for t in (PARAM, INPUT, INFER, MM)] for abi in ABIS}
    assert sizes == {"1.2": [208, 64, 32, 48], "1.3": [184, 160, 40, 144]}
    assert [ctypes.sizeof(t) for t in (Result, Extend, Callbacks13)] == [72, 120, 48]
    assert (PARAM["1.2"].img_start.offset, PARAM["1.2"].extend_param.offset, PARAM["1.3"].extend_param.offset) == (
        64, 88, 60)
    for abi in ABIS:
        lib = ctypes.CDLL(str(libs[abi]))
        for name in ("createDefaultParam", "init", "destroy", "run", "run_async", "abort", "is_running",
                     "clear_kv_cache", "get_kv_cache_size", "set_chat_template", "set_function_tools",
                     "set_cross_attn_params", "load_lora", "load_prompt_cache", "release_prompt_cache"):
            assert hasattr(lib, f"rkllm_{name}")
    monkeypatch.setenv("CC", "cc -DRKLLM_ABI=11")
    with pytest.raises(RuntimeError, match="RKLLM_ABI"):
        build_fake_rkllmrt("1.3", tmp_path)


@pytest.mark.parametrize("abi", ABIS)
def test_defaults_and_init_log(libs: dict[str, Path], model: Path, abi: str, capfd: pytest.CaptureFixture[str]) -> None:
    runtime = Runtime(libs[abi], abi)
    p = runtime.lib.rkllm_createDefaultParam()
    assert (p.top_k, p.extend_param.enabled_cpus_num, p.extend_param.n_batch) == (40, 4, 1)
    assert (p.top_p, p.temperature, p.repeat_penalty, p.mirostat_tau, p.mirostat_eta) == pytest.approx(
        (0.9, 0.8, 1.1, 5.0, 0.1))
    assert runtime.init(model) == 0 and runtime.handle.value
    err = capfd.readouterr().err
    assert f"rkllm-runtime version: {'1.3.0' if abi == '1.3' else '1.2.3'} (edge_vlm test runtime)" in err
    assert "npu_core_num: 3" in err and "Enabled cpus: [4, 5, 6, 7]" in err
    assert runtime.lib.rkllm_destroy(runtime.handle) == 0


INIT_FAILURES: dict[str, tuple[dict[str, Any], str]] = {
    "no model_path": ({"model_path": None}, "model_path is NULL"),
    "unreadable": ({"model_path": b"/nonexistent/m.rkllm"}, "failed to open rkllm model file /nonexistent/m.rkllm"),
    "malformed": ({"model_path": bytes(Path(__file__))}, "invalid rknn llm model magic"),
    "too few CPUs": ({"enabled_cpus_num": 2},
                     "The number of enabled CPUs must be greater than or equal to the number of NPU cores."),
    "context 0": ({"max_context_len": 0}, "max_context_len (0) must be > 0"),
    "context over limit": ({"max_context_len": 4097}, "<= max_context_limit (4096)"),
}


@pytest.mark.parametrize("case", INIT_FAILURES)
@pytest.mark.parametrize("abi", ABIS)
def test_init_rejections(libs: dict[str, Path], model: Path, abi: str, case: str,
                         capfd: pytest.CaptureFixture[str]) -> None:
    fields, message = INIT_FAILURES[case]
    runtime = Runtime(libs[abi], abi)
    assert runtime.init(model, **fields) == -1 and runtime.handle.value is None
    assert message in capfd.readouterr().err


def test_multimodal_run_streams_the_described_text(rt: Runtime) -> None:
    embed, prompt = embedding(0), "<image>Describe the scene, señor."
    assert rt.run(prompt, embed) == 0
    *tokens, finish = rt.events
    assert decoded(tokens) == expected(prompt, embed)
    assert finish.state == FINISH and finish.text is None
    waiting = [i for i, e in enumerate(tokens) if e.state == WAITING]  # é: WAITING (NULL), then NORMAL "é"
    assert len(waiting) == 1 and tokens[waiting[0]].text is None and tokens[waiting[0] + 1].text == "é".encode()
    texts = [e.text for e in tokens]
    assert (b" \xe2", b"\x80\xa6") in itertools.pairwise(texts)  # …: split over two NORMAL callbacks
    assert [e.token_id for e in tokens] == list(range(tokens[0].token_id, tokens[0].token_id + len(tokens)))
    assert all(e.perf == (0, 0, 0, 0, 0) for e in tokens)
    prefill_ms, prefill_tokens, generate_ms, generate_tokens, memory_mb = finish.perf
    assert (prefill_tokens, generate_tokens) == (196 + 4, len(tokens))
    assert prefill_ms > 0 and generate_ms > 0 and memory_mb > 10
    addresses = {e.address for e in tokens if e.address}
    assert len(addresses) == 1 and ctypes.string_at(addresses.pop()).startswith(b"~~~")  # one reused buffer
    assert rt.kv_cache_size() == 0
    rt.events.clear()  # another image, another text
    assert rt.run(prompt, embedding(1)) == 0 and decoded(rt.events) == expected(prompt, embedding(1)) != decoded(tokens)


REJECTIONS: dict[str, dict[str, Any]] = {
    "no <image>": {"prompt": "Describe."}, "n_image != <image> count": {"n_image": 2},
    "NULL embedding": {"embed": None}, "wrong n_image_tokens": {"n_tokens": 256},
    "zero width": {"size": (0, 392)}, "zero height": {"size": (392, 0)}, "mode != GENERATE": {"mode": 1},
    "NULL input": {"null": "input"}, "NULL infer_param": {"null": "infer"}}


@pytest.mark.parametrize("case", REJECTIONS)
def test_rejected_runs_make_no_callbacks(rt: Runtime, case: str, capfd: pytest.CaptureFixture[str]) -> None:
    args: dict[str, Any] = {"prompt": "<image>Describe.", "embed": embedding(0), **REJECTIONS[case]}
    assert rt.run(**args) == -1 and rt.events == []
    assert "E rkllm: rkllm_run: " in capfd.readouterr().err


def test_second_concurrent_run_is_rejected(rt: Runtime) -> None:
    nested: list[tuple[int, int]] = []

    def reply(n: int) -> int:
        if n == 1:  # from inside the first run's callback
            before = len(rt.events)
            nested.append((rt.run("<image>again", embedding(0)), len(rt.events) - before))
        return 0

    rt.reply = reply
    assert rt.run("<image>Describe.", embedding(0)) == 0
    assert nested == [(-1, 0)] and rt.events[-1].state == FINISH


def test_max_new_tokens_and_pause(libs: dict[str, Path], model: Path, rt: Runtime) -> None:
    limited = Runtime(libs[rt.abi], rt.abi)
    assert limited.init(model, max_new_tokens=3) == 0
    assert limited.run("<image>Describe.", embedding(0)) == 0
    assert [e.state for e in limited.events] == [NORMAL, NORMAL, NORMAL, FINISH]
    assert limited.lib.rkllm_destroy(limited.handle) == 0
    if rt.abi == "1.3":  # RKLLMInferParam.max_new_tokens overrides the init value
        assert rt.run("<image>Describe.", embedding(0), max_new_tokens=2) == 0
        assert [e.state for e in rt.events] == [NORMAL, NORMAL, FINISH]
        rt.events.clear()
    rt.reply = lambda n: 1 if n == 2 else 0  # 1 = pause: no FINISH, rkllm_run returns 0
    assert rt.run("<image>Describe.", embedding(0)) == 0
    assert [e.state for e in rt.events] == [NORMAL, NORMAL]


def test_abort_stops_a_slow_run(rt: Runtime) -> None:
    results: list[int] = []
    worker = threading.Thread(target=lambda: results.append(rt.run("<image>[[slow]] Describe.", embedding(0))))
    worker.start()
    assert rt.first_token.wait(30)
    assert rt.lib.rkllm_is_running(rt.handle) == (1 if rt.abi == "1.3" else 0)  # as each header documents it
    assert rt.lib.rkllm_abort(rt.handle) == 0
    worker.join(30)
    # Stopped early (a speed is for benchmarks): at most the token it was on, and no FINISH.
    assert results == [0] and not worker.is_alive()
    assert len(rt.events) <= 2 and FINISH not in [e.state for e in rt.events]


def test_text_prompt_kv_cache_error_and_async(rt: Runtime, capfd: pytest.CaptureFixture[str]) -> None:
    assert rt.run("  Hello there ", None, multimodal=False, keep_history=1) == 0
    assert decoded(rt.events) == "Test runtime read a text prompt: Hello there" + SUFFIX
    first = rt.kv_cache_size()
    assert first == 2 + rt.events[-1].perf[3]
    assert rt.run("<image>Describe.", embedding(0), keep_history=1) == 0
    assert rt.kv_cache_size() > first + 196
    assert rt.lib.rkllm_clear_kv_cache(rt.handle, 1, None, None) == 0 and rt.kv_cache_size() == 0
    assert rt.run("<image>Describe.", embedding(0), keep_history=0) == 0 and rt.kv_cache_size() == 0
    rt.events.clear()
    assert rt.run("<image>[[error]]", embedding(0)) == -1
    assert [(e.state, e.text) for e in rt.events] == [(ERROR, None)]
    assert rt.lib.rkllm_run_async(rt.handle, None, None, None) == -1
    assert "async not supported by the test runtime" in capfd.readouterr().err


REPLY = '{"label": "crème brûlée", "score": 0.93,\n  "tags": ["naïve café", "€😀€😀€"], "note": "say \\"hi\\""}'


def test_reply_directive_streams_exactly_its_text(rt: Runtime) -> None:
    prompt = f"<image>Describe as JSON. [[reply:{REPLY}]]"
    assert rt.run(prompt, embedding(0)) == 0
    *tokens, finish = rt.events
    assert decoded(tokens) == REPLY  # no prefix, no " Café … ok"
    texts = [e.text for e in tokens if e.state == NORMAL and e.text is not None]
    assert len(texts) == len(tokens) > len(REPLY.split())  # no WAITING; long words cut into pieces
    assert [t.decode("utf-8") for t in texts]  # each piece is whole UTF-8 characters
    assert [e.token_id for e in tokens] == list(range(tokens[0].token_id, tokens[0].token_id + len(tokens)))
    prefill_ms, prefill_tokens, generate_ms, generate_tokens, memory_mb = finish.perf
    assert finish.state == FINISH and finish.text is None and prefill_ms > 0 and generate_ms > 0 and memory_mb > 10
    assert (prefill_tokens, generate_tokens) == (196 + len(prompt.replace("<image>", "").split()), len(tokens))
    rt.events.clear()  # [[error]] still wins over the reply
    assert rt.run(f"<image>[[error]] [[reply:{REPLY}]]", embedding(0)) == -1
    assert [(e.state, e.text) for e in rt.events] == [(ERROR, None)]


def test_last_reply_directive_wins(libs: dict[str, Path], model: Path, rt: Runtime, tmp_path: Path,
                                   monkeypatch: pytest.MonkeyPatch) -> None:
    log = tmp_path / "calls.jsonl"
    monkeypatch.setenv(LOG_ENV, str(log))
    retry = ("<image>Answer in JSON. [[reply:not json, sorry]]\nThat was not valid JSON; try again. "
             '[[reply:[{"ok": true}]]] [[reply:unterminated')
    assert rt.run(retry, embedding(0)) == 0
    assert decoded(rt.events) == '[{"ok": true}]' and rt.events[-1].state == FINISH  # "]]]": TEXT ends with "]"
    assert json.loads(log.read_text("utf-8").splitlines()[0])["prompt"] == retry  # the log keeps the whole prompt
    rt.events.clear()
    started = time.monotonic()
    assert rt.run("[[slow]] [[reply:fine]]", None, multimodal=False) == 0
    assert decoded(rt.events) == "fine" and time.monotonic() - started >= 0.2
    limited = Runtime(libs[rt.abi], rt.abi)
    assert limited.init(model, max_new_tokens=2) == 0
    assert limited.run("<image>[[reply:one two three]]", embedding(0)) == 0
    assert [(e.state, e.text) for e in limited.events] == [(NORMAL, b"one"), (NORMAL, b" two"), (FINISH, None)]
    assert limited.lib.rkllm_destroy(limited.handle) == 0


def _child(lib: str, abi: str, model: str, directive: str) -> None:
    """In a subprocess: start a run with the directive, abort after the first token, report whether it returned."""
    runtime = Runtime(Path(lib), abi)
    assert runtime.init(Path(model)) == 0
    worker = threading.Thread(target=runtime.run, args=(f"<image>{directive}", embedding(0)), daemon=True)
    worker.start()
    runtime.first_token.wait(30)
    runtime.lib.rkllm_abort(runtime.handle)
    worker.join(0.5)
    print("hung" if worker.is_alive() else "returned", flush=True)


@pytest.mark.parametrize("directive", ["[[segfault]]", "[[hang]]"])
@pytest.mark.parametrize("abi", ABIS)
def test_fatal_directives_in_a_child(libs: dict[str, Path], model: Path, abi: str, directive: str) -> None:
    code = "import sys; from tests.test_fake_rkllmrt import _child; _child(*sys.argv[1:])"
    child = subprocess.run([sys.executable, "-c", code, str(libs[abi]), abi, str(model), directive],
                           cwd=ROOT, capture_output=True, text=True, timeout=60, check=False)
    if directive == "[[segfault]]":
        assert child.returncode == -signal.SIGSEGV, child.stderr
    else:  # [[hang]] ignores rkllm_abort
        assert (child.returncode, child.stdout) == (0, "hung\n"), child.stderr


@pytest.mark.parametrize("abi", ABIS)
def test_json_log_records_what_the_binding_sent(libs: dict[str, Path], model: Path, abi: str, tmp_path: Path,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    log = tmp_path / "calls.jsonl"
    monkeypatch.setenv(LOG_ENV, str(log))
    runtime, embed = Runtime(libs[abi], abi), embedding(3)
    assert runtime.init(model, base_domain_id=2) == 0
    assert runtime.run('<image>Say "hi"\n\tnaïvely', embed) == 0
    assert runtime.run("no image here", embed) == -1
    assert runtime.lib.rkllm_destroy(runtime.handle) == 0
    init, ok, done, bad, destroy = (json.loads(line) for line in log.read_text("utf-8").splitlines())
    assert (init["event"], init["abi"], init["accepted"], init["base_domain_id"]) == ("rkllm_init", abi, True, 2)
    assert (init["model_path"], init["enabled_cpus_mask"], init["max_new_tokens"]) == (str(model), 0xF0, 256)
    assert (ok["event"], ok["accepted"], ok["role"]) == ("rkllm_run", True, "user")
    assert ok["prompt"] == '<image>Say "hi"\n\tnaïvely' and ok["handle"] == init["handle"]
    assert (ok["image_start"], ok["image_end"], ok["image_content"]) == tuple(t.decode() for t in TAGS)
    assert (ok["n_image"], ok["n_image_tokens"], ok["image_width"], ok["keep_history"]) == (1, 196, 392, 0)
    assert ok["embed_signature"] == f"{zlib.crc32(embed.tobytes()):08x}"
    assert bad["accepted"] is False and "<image>" in bad["error"] and destroy["event"] == "rkllm_destroy"
    # the work the accepted run did: 196 image tokens and 3 words prefilled, the cache emptied (keep_history 0)
    assert (done["event"], done["image_tokens"], done["prompt_tokens"]) == ("rkllm_run_done", 196, 3)
    assert (done["kv_before"], done["kv_after"], done["finished"], done["paused"]) == (0, 0, True, False)
    assert done["generated_tokens"] > 0


def test_a_follow_up_is_answered_from_the_image_the_cache_holds_until_it_is_cleared(rt: Runtime) -> None:
    """What a conversation about one frame relies on (rkllm.h's RKLLMInferParam): keep_history 1 keeps the image in
    the KV cache for a text-only follow-up; clearing the cache forgets it; a pause keeps it too."""
    image = embedding(5)
    question = "Is anyone there? [[see:Yes.]]"
    assert rt.run("<image>Describe.", image, keep_history=1) == 0
    rt.events.clear()

    assert rt.run(question, None, multimodal=False, keep_history=1) == 0
    assert decoded(rt.events) == "Yes."
    rt.events.clear()
    assert rt.run("And now?", None, multimodal=False, keep_history=1) == 0
    assert decoded(rt.events).startswith(
        f"Test runtime answered from the image in its cache, signature {zlib.crc32(image.tobytes()):08x}: And now?")

    assert rt.lib.rkllm_clear_kv_cache(rt.handle, 0, None, None) == 0
    rt.events.clear()
    assert rt.run(question, None, multimodal=False, keep_history=1) == 0
    assert decoded(rt.events) == "I see no image."
    assert rt.lib.rkllm_clear_kv_cache(rt.handle, 0, None, None) == 0

    # without keep_history the image is gone after the run, unless the callback paused it
    assert rt.run("<image>Describe.", image, keep_history=0) == 0
    rt.events.clear()
    assert rt.run(question, None, multimodal=False) == 0
    assert decoded(rt.events) == "I see no image."


@pytest.mark.parametrize("abi", ABIS)
def test_a_turn_that_does_not_fit_after_the_cache_is_refused(libs: dict[str, Path], model: Path, abi: str,
                                                             capfd: pytest.CaptureFixture[str]) -> None:
    runtime = Runtime(libs[abi], abi)
    assert runtime.init(model, max_context_len=200) == 0
    assert runtime.run("<image>Describe. [[reply:ok]]", embedding(0), keep_history=1) == 0
    assert runtime.kv_cache_size() == 196 + 2 + 1  # the image, two words, the answer

    assert runtime.run("one more question", None, multimodal=False, keep_history=1) == -1
    assert "3 prefill tokens after the 199 in the KV cache exceed max_context_len (200)" in capfd.readouterr().err
    assert runtime.kv_cache_size() == 199  # the refused turn left the cache as it was
    assert runtime.lib.rkllm_destroy(runtime.handle) == 0
