"""Reading what the model answered: a JSON object checked against the profile's fields, or yes/no.

Small models wrap JSON in prose or code fences, write numbers as strings and booleans as words;
those are accepted. A missing field, a wrong type or a value out of bounds is not: the answer is
asked for again once, then reported.

``answer()`` runs a job on the backend as one conversation about its frame: the description, the
structured answer checked (and asked again once), then each alert rule's yes/no question.
"""

from __future__ import annotations

import json
import logging
import math
import re
import time
from collections.abc import Mapping
from typing import Any

from edge_vlm.config.automation import FieldSpec
from edge_vlm.core.errors import AnswerError, BackendError, ErrorCode
from edge_vlm.inference.backends import Backend
from edge_vlm.inference.prompts import question_prompt
from edge_vlm.inference.results import Description, Result
from edge_vlm.schedule.job import Job

logger = logging.getLogger(__name__)

# A question that failed so: the job's other questions are not asked (each could wait as long).
GIVE_UP = (ErrorCode.TIMED_OUT, ErrorCode.WORKER_CRASHED, ErrorCode.MODEL_UNAVAILABLE)
YES_NO_TOKENS = 4  # "Yes", "Yes.", "No, it is": what yes_or_no reads is the first word
_WORDS_TRUE = {"yes", "true", "y", "1"}
_WORDS_FALSE = {"no", "false", "n", "0", "none"}


def _json_object(text: str) -> dict[str, Any]:
    start = text.find("{")
    if start < 0:
        raise AnswerError("no JSON object in the answer")
    try:
        value, _ = json.JSONDecoder().raw_decode(text[start:])
    except json.JSONDecodeError as exc:
        raise AnswerError(f"invalid JSON: {exc.msg}") from None
    if not isinstance(value, dict):
        raise AnswerError("the answer is not a JSON object")
    return value


def _typed(name: str, value: Any, spec: FieldSpec) -> Any:
    if spec.type == "string":
        if not isinstance(value, str | int | float):
            raise AnswerError(f"{name} should be text")
        return str(value)[: spec.max_length]
    if spec.type == "boolean":
        word = str(value).strip().lower()
        if isinstance(value, bool) or word in _WORDS_TRUE | _WORDS_FALSE:
            return value if isinstance(value, bool) else word in _WORDS_TRUE
        raise AnswerError(f"{name} should be true or false")
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise AnswerError(f"{name} should be a number") from None
    if not math.isfinite(number):  # Python's JSON reads NaN and 1e999; Home Assistant cannot
        raise AnswerError(f"{name} should be a finite number")
    if spec.type == "integer":
        if number != int(number):
            raise AnswerError(f"{name} should be a whole number")
        number = int(number)
    if (spec.minimum is not None and number < spec.minimum) or (spec.maximum is not None and number > spec.maximum):
        raise AnswerError(f"{name} = {number:g} is out of bounds")
    return number


def structured(text: str, fields: Mapping[str, FieldSpec]) -> dict[str, Any]:
    """The fields of a JSON answer, typed and checked; AnswerError when it will not do."""
    data = _json_object(text)
    missing = [name for name in fields if name not in data]
    if missing:
        raise AnswerError(f"missing {', '.join(missing)}")
    return {name: _typed(name, data[name], spec) for name, spec in fields.items()}


def yes_or_no(text: str) -> bool | None:
    """True for yes, False for no, None when the answer is neither."""
    words = re.findall(r"[a-z]+", text.lower())
    if not words:
        return None
    if words[0] in _WORDS_TRUE:
        return True
    if words[0] in _WORDS_FALSE:
        return False
    return None


def _checked(text: str, job: Job) -> dict[str, Any]:
    """The JSON answer the job wants: its fields checked, or (json_object) the object as given."""
    return structured(text, job.fields) if job.fields else _json_object(text)


def answer(backend: Backend, job: Job, queued_ms: float | None = None) -> Result:
    """Ask the backend about ``job`` (which waited ``queued_ms`` for it); BackendError (code
    ``bad_answer``) when a structured answer is still invalid after asking again.

    One conversation about the frame: the description first, then (the same image, read once) the
    structured answer's retry and each alert rule's yes/no question as follow-ups."""
    # a JSON answer is told whole, once checked; a text one as the model writes it, to an asker that streams
    json_answer = bool(job.fields) or job.json_object
    told = job.reply.told if job.reply is not None and not json_answer else None
    with backend.conversation(job.prepared, job.frame) as chat:
        description = chat.ask(job.prompt, max_new_tokens=job.max_new_tokens, sampling=job.sampling, told=told)
        turns = [description]
        fields = None
        extra_ms: dict[str, float] = {}
        if json_answer:
            try:
                fields = _checked(description.text, job)
            except AnswerError as first:
                started = time.perf_counter()
                retry = job.retry_prompt.replace("{prompt}", job.prompt).replace("{error}", str(first))
                # if the frame must be read again, the retry goes with its question
                alone = retry if "{prompt}" in job.retry_prompt else f"{job.prompt}\n\n{retry}"
                again = chat.ask(retry, alone=alone, max_new_tokens=job.max_new_tokens, sampling=job.sampling)
                turns.append(again)
                extra_ms["retry"] = round((time.perf_counter() - started) * 1000, 2)
                try:
                    fields = _checked(again.text, job)
                except AnswerError as second:
                    raise BackendError(f"the model's answer is not the JSON asked for, twice: {first}; then {second} "
                                       f"(answer: {again.text[:200]!r})", code=ErrorCode.BAD_ANSWER) from None
                description = Description(again.text, description.timings_ms, description.details)
        answers: dict[str, bool | None] = {}
        if job.questions:
            started = time.perf_counter()
            for rule, question in job.questions.items():
                try:
                    reply = chat.ask(question_prompt(question), max_new_tokens=YES_NO_TOKENS)
                    turns.append(reply)
                    answers[rule] = yes_or_no(reply.text)
                except BackendError as exc:  # the description stands; this rule just gets no answer
                    if exc.code == ErrorCode.CANCELLED:
                        raise
                    logger.warning("%s: alert question %r failed (%s): %s", job.camera or "request", rule, exc.code,
                                   exc)
                    answers[rule] = None
                    if exc.code in GIVE_UP:  # the others would wait as long: the job has had its time
                        answers.update({other: None for other in job.questions if other not in answers})
                        break
            extra_ms["questions"] = round((time.perf_counter() - started) * 1000, 2)
    return Result(job, description, backend.name, time.time(), fields, answers, extra_ms, queued_ms, tuple(turns))
