"""A job's conversation about its frame inside the vlm worker's engine (issue 13): the engine runs
in this process with the real ONNX encoder and the test RKLLM runtime, so every turn's work can be
read from the runtime's call log."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from edge_vlm.config.vlm import VlmBackendConfig
from edge_vlm.core.errors import BackendError
from edge_vlm.inference.backends.vlm import VlmEngine
from edge_vlm.inference.vision.preprocess import encoder_input
from edge_vlm.inference.worker.messages import JobDone, RunJob
from tests.support.native import LOG_ENV
from tests.support.npu import ONNX_SIZE, vlm_backend


@pytest.fixture
def engine(fake_rkllmrt: dict[str, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[VlmEngine]:
    monkeypatch.setenv(LOG_ENV, str(tmp_path / "calls.jsonl"))
    backend = vlm_backend(tmp_path, fake_rkllmrt["1.3"], abi="1.3", encoder="onnx")
    backend["llm"].update(max_context_len=160, max_new_tokens=16)  # room for a few follow-ups, not many
    loaded = VlmEngine(VlmBackendConfig.model_validate(backend))
    loaded.load()
    yield loaded
    loaded.close()


def runs(tmp_path: Path) -> list[dict[str, Any]]:
    """What each rkllm_run did, with the prompt it was given."""
    done, prompt = [], ""
    for line in (tmp_path / "calls.jsonl").read_text().splitlines():
        call = json.loads(line)
        if call["event"] == "rkllm_run":
            prompt = call["prompt"]
        elif call["event"] == "rkllm_run_done":  # a run that did its work (not one that reported an error)
            done.append({**call, "prompt": prompt})
    return done


PIXELS = encoder_input(np.full((48, 64, 3), 90, np.uint8), ONNX_SIZE)
IDS = iter(range(1, 1000))


def ask(engine: VlmEngine, prompt: str, conversation: int | None, *, alone: str | None = None,
        pixels: np.ndarray = PIXELS) -> JobDone:
    return engine.run(RunJob(next(IDS), "porch", pixels, prompt, conversation, alone=alone), lambda: False)


def test_follow_ups_read_the_cache_then_the_image_again_when_it_is_full(engine: VlmEngine, tmp_path: Path) -> None:
    first = ask(engine, "Describe. [[reply:A person waits at the door]]", 1)
    question = ask(engine, "Is there a person? [[see:Yes.]]", 1)
    # the cache holds the image and two turns; this turn, with an answer of up to 16 tokens, does not fit
    long = "Is the door open and is there a parcel and who holds it and what colour is the coat? [[see:No.]]"
    again = ask(engine, long * 3, 1, alone="Describe. Then: " + long)

    assert [d.text for d in (first, question, again)] == ["A person waits at the door", "Yes.", "No."]
    assert [d.details["encoder_passes"] for d in (first, question, again)] == [1, 0, 0]  # one encoder pass
    done = runs(tmp_path)
    assert [d["image_tokens"] for d in done] == [16, 0, 16]  # the image read again from the kept embeddings
    assert done[1]["kv_before"] > 0 and done[2]["kv_before"] == 0  # ...into an emptied cache
    assert done[2]["prompt"] == "<image>Describe. Then: " + long  # the follow-up as it stands alone


def test_a_new_frame_or_a_single_question_never_sees_another_frames_image(engine: VlmEngine, tmp_path: Path) -> None:
    other = encoder_input(np.full((48, 64, 3), 200, np.uint8), ONNX_SIZE)
    ask(engine, "Describe. [[reply:ok]]", 1)
    ask(engine, "Describe. [[reply:ok]]", 2, pixels=other)  # conversation 1 was never ended: 2 forgets it
    single = ask(engine, "What is there?", None)
    after = ask(engine, "Anything? [[see:yes]]", 2)  # single questions end conversations too

    assert single.details["encoder_passes"] == 1
    assert after.details["encoder_passes"] == 1 and after.text == "yes"  # read afresh, not from the cache
    done = runs(tmp_path)
    assert [d["kv_before"] for d in done] == [0, 0, 0, 0]
    assert [d["image_tokens"] for d in done] == [16, 16, 16, 16]


def test_a_failed_turn_leaves_the_cache_empty_and_the_next_reads_the_image_again(
        engine: VlmEngine, tmp_path: Path) -> None:
    ask(engine, "Describe. [[reply:ok]]", 1)
    with pytest.raises(BackendError, match="rkllm_run failed"):
        ask(engine, "Is it raining? [[error]]", 1)
    recovered = ask(engine, "Is there a person? [[see:Yes.]]", 1)

    assert recovered.text == "Yes." and recovered.details["encoder_passes"] == 0  # the embeddings were kept
    assert [d["image_tokens"] for d in runs(tmp_path)] == [16, 16]  # (the failed run did no work)
    engine.end_conversation(1)
    assert ask(engine, "Still there? [[see:Yes.]]", None).details["encoder_passes"] == 1
