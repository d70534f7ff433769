"""Reading the model's answers: numbers Home Assistant cannot take are refused, and a failed
yes/no question costs its rule an answer, not the description."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator

import numpy as np
import pytest

from edge_vlm.config.automation import FieldSpec
from edge_vlm.config.models import OpencvBackendConfig
from edge_vlm.core.contracts import Origin
from edge_vlm.core.errors import AnswerError, BackendError
from edge_vlm.frames import Frame, decode_image
from edge_vlm.inference.answers import answer, structured
from edge_vlm.inference.backends.opencv import OpencvBackend
from edge_vlm.inference.prompts import YES_NO
from edge_vlm.inference.results import Description
from edge_vlm.schedule.job import Job
from tests.support import images

COUNT = {"people": FieldSpec(type="integer", description="how many people", minimum=0, maximum=20)}
LEVEL = {"level": FieldSpec(type="number", description="how bright", minimum=0, maximum=1)}


@pytest.mark.parametrize("text", ['{"people": NaN}', '{"people": Infinity}', '{"people": 1e999}',
                                  '{"people": "nan"}', '{"people": "-inf"}'])
def test_a_count_that_is_no_finite_number_is_asked_again(text: str) -> None:
    with pytest.raises(AnswerError, match="people should be a finite number"):
        structured(text, COUNT)


@pytest.mark.parametrize("text", ['{"level": NaN}', '{"level": -Infinity}'])
def test_a_measurement_that_is_no_finite_number_is_asked_again(text: str) -> None:
    with pytest.raises(AnswerError, match="level should be a finite number"):
        structured(text, LEVEL)


def test_finite_numbers_still_pass() -> None:
    assert structured('{"people": "2"}', COUNT) == {"people": 2}
    assert structured('{"level": 0.25}', LEVEL) == {"level": 0.25}


class QuestionsFail(OpencvBackend):
    """Describes as usual; the alert questions fail with ``code``."""

    def __init__(self, code: str) -> None:
        super().__init__(OpencvBackendConfig())
        self.code = code
        self.questions_asked = 0
        self.load()

    def describe(self, prepared: np.ndarray | None, frame: Frame | None, prompt: str) -> Description:
        if prompt.endswith(YES_NO):
            self.questions_asked += 1
            raise BackendError("no answer within backend.job_timeout_s", code=self.code)
        return super().describe(prepared, frame, prompt)


def job(backend: OpencvBackend) -> Job:
    frame = decode_image(images.sample("front_door"), camera="porch", captured_at=time.time(),
                         max_bytes=10_000_000, max_pixels=50_000_000, min_long_side=None)
    return Job("porch", frame, backend.prepare(frame), "Describe.", "j1", Origin.TRIGGER,
               received_at=time.monotonic(), questions={"parcel": "Is someone holding a parcel?",
                                                        "door": "Is the door open?"})


@pytest.fixture
def questions_fail() -> Iterator[Callable[[str], QuestionsFail]]:
    """Backends whose questions fail; closed when the test ends (their workers ignore SIGTERM, so one
    left running would keep the test process from exiting)."""
    made: list[QuestionsFail] = []

    def make(code: str) -> QuestionsFail:
        made.append(QuestionsFail(code))
        return made[-1]

    yield make
    for backend in made:
        backend.close()


def test_a_failed_question_leaves_the_description_and_no_answer_for_its_rule(
        questions_fail: Callable[[str], QuestionsFail]) -> None:
    backend = questions_fail("bad_answer")
    result = answer(backend, job(backend))
    assert result.text == "1 person; 1 face visible; daylight"
    assert result.answers == {"parcel": None, "door": None}
    assert backend.questions_asked == 2


def test_a_question_that_timed_out_is_the_last_the_job_asks(
        questions_fail: Callable[[str], QuestionsFail]) -> None:
    """Each question could wait job_timeout_s again: after one timed out, the job has had its time."""
    backend = questions_fail("timed_out")
    result = answer(backend, job(backend))
    assert result.text == "1 person; 1 face visible; daylight"
    assert result.answers == {"parcel": None, "door": None}
    assert backend.questions_asked == 1


def test_a_cancelled_question_cancels_the_job(questions_fail: Callable[[str], QuestionsFail]) -> None:
    backend = questions_fail("cancelled")
    with pytest.raises(BackendError, match="job_timeout_s") as raised:
        answer(backend, job(backend))
    assert raised.value.code == "cancelled"
