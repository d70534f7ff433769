"""The ctypes binding of librkllmrt, against the test runtime built for each ABI."""

from __future__ import annotations

import json
import threading
from pathlib import Path

import numpy as np
import pytest

from edge_vlm.config.vlm import ImageTags, ModelSpec, RkllmConfig, VlmBackendConfig
from edge_vlm.core.contracts import Sampling
from edge_vlm.core.errors import BackendError
from edge_vlm.inference.backends.vlm import VlmBackend
from edge_vlm.inference.llm import abi, layout, runtime
from edge_vlm.inference.llm.params import run_sampling
from edge_vlm.inference.llm.rkllm import RkllmModel
from tests.support.native import LOG_ENV, write_model_file
from tests.support.npu import QWEN_TAGS, signature, vlm_backend

SPEC = ModelSpec("qwen2-vl-2b", 392, 196, 1536,
                 ImageTags(start="<|vision_start|>", end="<|vision_end|>", content="<|image_pad|>"),
                 (127.5, 127.5, 127.5), (127.5, 127.5, 127.5))


def embeddings(seed: int, tokens: int = 196) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal((tokens, 1536)).astype(np.float32)


def model(fake_rkllmrt: dict[str, Path], tmp_path: Path, abi_name: str, *, in_process: bool = False,
          **config: object) -> RkllmModel:
    model_file = write_model_file(tmp_path / "model.rkllm", **config.pop("model_keys", {}))  # type: ignore[arg-type]
    llm = RkllmModel(RkllmConfig.model_validate({"model": model_file, "library": fake_rkllmrt[abi_name],
                                                 "runtime_version": abi_name, **config}),
                     SPEC, encoder_on_npu=in_process)
    llm.load()
    return llm


def test_structs_match_the_documented_layout() -> None:
    assert layout.layout_problems() == []


@pytest.mark.parametrize("abi_name", ["1.2", "1.3"])
def test_a_frame_becomes_text_through_either_abi(fake_rkllmrt: dict[str, Path], tmp_path: Path,
                                                 monkeypatch: pytest.MonkeyPatch, abi_name: str) -> None:
    log = tmp_path / "calls.jsonl"
    monkeypatch.setenv(LOG_ENV, str(log))
    llm = model(fake_rkllmrt, tmp_path, abi_name, in_process=True, cpus=[4, 5, 6, 7])
    image = embeddings(1)
    try:
        generation = llm.generate("<image>Who is at the door?", image, 392)
        other = llm.generate("<image>Who is at the door?", embeddings(2), 392)
    finally:
        llm.close()
    assert generation.text == (f"Test runtime saw 196 image tokens, signature {signature(image)}, tags {QWEN_TAGS}, "
                               "392x392: Who is at the door? Café … ok")
    assert other.text != generation.text  # the text follows the image
    assert generation.generated_tokens > 10 and (generation.prefill_tokens or 0) > 196
    assert generation.decode_ms >= 0 and generation.prefill_ms > 0
    calls = [json.loads(line) for line in log.read_text().splitlines()]
    init = next(c for c in calls if c["event"] == "rkllm_init")
    run = next(c for c in calls if c["event"] == "rkllm_run")
    assert (init["base_domain_id"], init["enabled_cpus_num"], init["enabled_cpus_mask"]) == (1, 4, 0xF0)
    assert (init["max_context_len"], init["max_new_tokens"], init["top_k"]) == (2048, 128, 1)
    assert (run["keep_history"], run["n_image"], run["n_image_tokens"], run["role"]) == (0, 1, 196, "user")
    assert (run["image_width"], run["image_height"]) == (392, 392)
    assert "|".join((run["image_start"], run["image_end"], run["image_content"])) == QWEN_TAGS


@pytest.mark.parametrize("abi_name", ["1.2", "1.3"])
def test_follow_ups_are_answered_from_the_kept_image_and_stop_at_their_limit(
        fake_rkllmrt: dict[str, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch, abi_name: str) -> None:
    """A conversation about one frame: the image prefilled once, follow-ups as text after it (keep_history
    1), a short answer stopped at its limit (1.3: the run's max_new_tokens; 1.2: the callback pauses),
    the cache cleared at the end."""
    log = tmp_path / "calls.jsonl"
    monkeypatch.setenv(LOG_ENV, str(log))
    llm = model(fake_rkllmrt, tmp_path, abi_name)
    image = embeddings(3)
    try:
        described = llm.generate("<image>Describe. [[reply:A dog on the lawn]]", image, 392, keep_history=True)
        left = llm.context_left()
        answer = llm.generate("Is there a dog? [[see:Yes, there is a dog.]]", None, 392, keep_history=True,
                              max_new_tokens=2)
        recalled = llm.generate("What did you see?", None, 392, keep_history=True)
        llm.clear()
        forgotten = llm.generate("Is there a dog? [[see:Yes.]]", None, 392)
    finally:
        llm.close()
    assert described.text == "A dog on the lawn"
    assert described.prefill_tokens == 196 + 6  # the test runtime counts words
    assert left == 2048 - (196 + 6 + 5)  # the image, six words and the five-token answer stay in the cache
    assert answer.text == "Yes, there" and answer.generated_tokens == 2
    assert recalled.text.startswith(f"Test runtime answered from the image in its cache, signature {signature(image)}")
    assert forgotten.text == "I see no image."
    calls = [json.loads(line) for line in log.read_text().splitlines()]
    runs = [c for c in calls if c["event"] == "rkllm_run"]
    done = [c for c in calls if c["event"] == "rkllm_run_done"]
    assert [r["input_type"] for r in runs] == [3, 0, 0, 0]  # multimodal once, then text
    assert [d["image_tokens"] for d in done] == [196, 0, 0, 0]
    assert [d["kv_before"] for d in done[:3]] == [0, 207, 207 + 9 + 2]
    if abi_name == "1.3":
        assert runs[1]["max_new_tokens"] == 2 and done[1]["finished"]
    else:  # no per-run limit before 1.3: the callback paused the run, which keeps the cache
        assert done[1]["paused"] and not done[1]["finished"]


def test_a_cpu_encoder_leaves_the_model_in_domain_0(fake_rkllmrt: dict[str, Path], tmp_path: Path,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    log = tmp_path / "calls.jsonl"
    monkeypatch.setenv(LOG_ENV, str(log))
    model(fake_rkllmrt, tmp_path, "1.3", in_process=False).close()
    assert json.loads(log.read_text().splitlines()[0])["base_domain_id"] == 0


def test_what_the_runtime_refuses_is_an_error(fake_rkllmrt: dict[str, Path], tmp_path: Path) -> None:
    llm = model(fake_rkllmrt, tmp_path, "1.3")
    try:
        with pytest.raises(BackendError, match="rkllm_run failed"):
            llm.generate("<image>Hello", embeddings(1, tokens=100), 392)  # wrong token count
        with pytest.raises(BackendError, match="rkllm_run failed"):
            llm.generate("<image>[[error]]", embeddings(1), 392)
        assert llm.generate("<image>Still fine", embeddings(1), 392).text.endswith("Still fine Café … ok")
    finally:
        llm.close()


def test_init_failures_say_so(fake_rkllmrt: dict[str, Path], tmp_path: Path) -> None:
    with pytest.raises(BackendError, match="rkllm_init failed"):
        model(fake_rkllmrt, tmp_path, "1.3", cpus=[4, 5], model_keys={"npu_cores": 3})
    with pytest.raises(BackendError, match="cannot load"):
        RkllmModel(RkllmConfig(model=tmp_path / "m", library=tmp_path / "missing.so", runtime_version="1.3"),
                   SPEC, encoder_on_npu=False).load()


def test_abort_from_another_thread_stops_a_run(fake_rkllmrt: dict[str, Path], tmp_path: Path) -> None:
    llm = model(fake_rkllmrt, tmp_path, "1.3")
    timer = threading.Timer(0.3, llm.abort)
    timer.start()
    try:
        with pytest.raises(BackendError, match="before finishing the answer"):
            llm.generate("<image>[[slow]] take your time", embeddings(1), 392)
        assert llm.generate("<image>Next", embeddings(1), 392).text.endswith("Next Café … ok")  # not aborted
    finally:
        timer.cancel()
        llm.close()


def test_runtime_version_auto_identifies_official_releases_only(fake_rkllmrt: dict[str, Path],
                                                                monkeypatch: pytest.MonkeyPatch) -> None:
    library = fake_rkllmrt["1.3"]
    with pytest.raises(BackendError, match=r"set backend\.llm\.runtime_version"):
        runtime.resolve_abi(library, "auto")
    blob = runtime.git_blob_id(library)
    monkeypatch.setitem(runtime.RELEASES, blob, "1.3.0")
    assert runtime.resolve_abi(library, "auto") == "1.3"
    monkeypatch.setitem(runtime.RELEASES, blob, "1.1.4")
    with pytest.raises(BackendError, match=r"runtime 1\.1\.4, which edge_vlm does not support"):
        runtime.resolve_abi(library, "auto")
    with pytest.raises(BackendError, match=r"runtime 1\.1\.4, which edge_vlm does not support"):
        runtime.resolve_abi(library, "1.2")  # an identified release no ABI fits, whatever the setting
    monkeypatch.delitem(runtime.RELEASES, blob)
    assert runtime.resolve_abi(library, "1.2") == "1.2"  # an explicit choice for an unknown build is trusted...
    monkeypatch.setitem(runtime.RELEASES, blob, "1.3.0")
    with pytest.raises(BackendError, match=r'is RKLLM runtime 1\.3\.0 \(ABI 1\.3\), but backend\.llm\.runtime_version '
                                           r'is "1\.2": set it to "1\.3" or "auto"'):
        runtime.resolve_abi(library, "1.2")  # ...unless the library is an official release of the other ABI


@pytest.mark.parametrize(("built", "configured"), [("1.3", "1.2"), ("1.2", "1.3")])
def test_a_build_of_the_other_abi_is_named_when_it_fails_to_load(
        fake_rkllmrt: dict[str, Path], tmp_path: Path, built: str, configured: str) -> None:
    """Issue 13, point 5: a runtime edge_vlm cannot identify, bound with the ABI the configuration
    names, crashes or fails while loading when it speaks the other one: the error says which setting
    to change, to what."""
    config = VlmBackendConfig.model_validate(vlm_backend(tmp_path, fake_rkllmrt[built], abi=configured))
    backend = VlmBackend(config)
    with pytest.raises(BackendError) as failed:
        backend.load()
    backend.close()
    assert f'set backend.llm.runtime_version to "{built}"' in str(failed.value)
    assert "is not an official RKLLM runtime release edge_vlm knows" in str(failed.value)


def test_git_blob_id_is_what_git_hash_object_prints(tmp_path: Path) -> None:
    (tmp_path / "f").write_bytes(b"hello\n")
    assert runtime.git_blob_id(tmp_path / "f") == "ce013625030ba8dba906f756967f9e9ca394464a"


def test_a_runs_sampling_starts_from_the_configured_one_and_temperature_0_is_greedy() -> None:
    configured = abi.RKLLMSamplingParam(top_k=40, top_p=0.9, temperature=0.8, repeat_penalty=1.1, mirostat_tau=5.0)
    asked = run_sampling(configured, Sampling(top_k=5, top_p=0.5))
    assert (asked.top_k, asked.top_p, asked.temperature, asked.repeat_penalty, asked.mirostat_tau) == (
        5, 0.5, pytest.approx(0.8), pytest.approx(1.1), 5.0)
    assert run_sampling(configured, Sampling(temperature=0, top_k=5)).top_k == 1
    cold = abi.RKLLMSamplingParam(top_k=1, top_p=0.9, temperature=0.0)  # configured greedy by temperature 0
    assert run_sampling(cold, Sampling(top_k=40)).top_k == 1  # the runtime would divide by it
    assert configured.top_k == 40  # the configured one is left as it was
