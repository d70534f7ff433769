"""A conversation about one frame, as the daemon holds it: each question a job for the worker, which
keeps the frame (the vlm's image in its KV cache) between them until the conversation ends."""

from __future__ import annotations

from typing import Protocol

import numpy as np

from edge_vlm.core.contracts import Sampling
from edge_vlm.frames import Frame
from edge_vlm.inference.backends import Told
from edge_vlm.inference.results import Description
from edge_vlm.inference.worker.messages import RunJob


class JobRunner(Protocol):
    def job(self, prepared: np.ndarray | None, frame: Frame | None, prompt: str, *, conversation: int | None = None,
            max_new_tokens: int | None = None, alone: str | None = None, sampling: Sampling | None = None,
            stream: bool = False) -> RunJob: ...

    def run(self, job: RunJob, told: Told | None = None) -> Description: ...

    def end_conversation(self, conversation: int) -> None: ...


class WorkerConversation:
    def __init__(self, runner: JobRunner, conversation: int, prepared: np.ndarray | None, frame: Frame | None) -> None:
        self._runner, self._id, self._prepared, self._frame = runner, conversation, prepared, frame
        self._asked = False

    def ask(self, prompt: str, *, max_new_tokens: int | None = None, alone: str | None = None,
            sampling: Sampling | None = None, told: Told | None = None) -> Description:
        self._asked = True
        job = self._runner.job(self._prepared, self._frame, prompt, conversation=self._id,
                               max_new_tokens=max_new_tokens, alone=alone, sampling=sampling, stream=told is not None)
        return self._runner.run(job, told)

    def end(self) -> None:
        if self._asked:
            self._runner.end_conversation(self._id)
