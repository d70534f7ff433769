"""What to ask and what to watch for: prompt profiles, structured answers and alert rules."""

from __future__ import annotations

import re
from typing import Annotated, Literal

from pydantic import AfterValidator, Field, field_validator, model_validator

from edge_vlm.config.base import ID_PATTERN, StrictModel

# Placeholders a prompt may use; each is filled when the prompt is asked (edge_vlm.inference.prompts).
PLACEHOLDERS = ("camera", "time", "span", "label", "sub_label", "zones", "previous", "language")
FIELD_PATTERN = r"^[a-z][a-z0-9_]{0,31}$"

# A follow-up in the job's conversation: the model has the image, the question and its answer.
DEFAULT_RETRY_PROMPT = ("Your answer was not the JSON object asked for ({error}). "
                        "Answer again with only the JSON object.")


def _known_placeholders(prompt: str) -> str:
    unknown = sorted(set(re.findall(r"{([A-Za-z_]\w*)}", prompt)) - set(PLACEHOLDERS))
    if unknown:
        raise ValueError(f"unknown placeholder(s) {unknown}; use {list(PLACEHOLDERS)}")
    return prompt


# A prompt in the configuration: its placeholders are checked when the file is read.
PromptText = Annotated[str, AfterValidator(_known_placeholders)]


# What the built-in opencv backend reports besides its sentence (inference/backends/opencv.py), for field rules.
OPENCV_DETAILS = {"people": "number", "faces": "number", "light": "string", "brightness": "number",
                  "motion": "string", "motion_fraction": "number"}


class FieldSpec(StrictModel):
    type: Literal["string", "integer", "number", "boolean"] = Field(description="What the value is.")
    description: str = Field(min_length=1, max_length=300, description="What the model is to put there.")
    minimum: float | None = Field(None, ge=-1e9, le=1e9, description="Smallest number allowed.")
    maximum: float | None = Field(None, ge=-1e9, le=1e9, description="Largest number allowed.")
    max_length: int = Field(255, ge=1, le=255, description="Longest string (Home Assistant keeps 255).")
    unit: str | None = Field(None, max_length=16, description="Unit shown in Home Assistant.")

    @model_validator(mode="after")
    def _bounds_fit(self) -> FieldSpec:
        if (self.minimum is not None or self.maximum is not None) and self.type not in ("integer", "number"):
            raise ValueError("minimum and maximum are for integer and number fields")
        if self.unit is not None and self.type not in ("integer", "number"):
            raise ValueError("unit is for integer and number fields (Home Assistant wants a number with a unit)")
        if self.minimum is not None and self.maximum is not None and self.minimum > self.maximum:
            raise ValueError("minimum is above maximum")
        return self


class ProfileConfig(StrictModel):
    prompt: PromptText = Field(
        min_length=1, max_length=4000, description="The question; placeholders {camera}, {time}, {span} "
        "(what the image covers: 'this moment' or a clip's 'the last 8 seconds'), {label}, {sub_label}, {zones}, "
        "{previous} (the camera's last description), {language}.")
    fields: dict[str, FieldSpec] = Field(
        default_factory=dict, max_length=16,
        description="Ask for a JSON object with these fields (each becomes a Home Assistant entity); empty: text.",
    )
    retry_prompt: str = Field(
        DEFAULT_RETRY_PROMPT, min_length=1, max_length=4000,
        description="Asked once, as a follow-up, when a JSON answer is invalid; {error} is what was wrong, {prompt} "
        "the first question.",
    )

    @field_validator("fields")
    @classmethod
    def _field_names(cls, fields: dict[str, FieldSpec]) -> dict[str, FieldSpec]:
        for name in fields:
            if not re.match(FIELD_PATTERN, name):
                raise ValueError(f"{name!r}: field names are 1-32 lower-case letters, digits and _, from a letter")
        return fields

    @property
    def structured(self) -> bool:
        return bool(self.fields)


# Home Assistant's binary sensor device classes.
BinarySensorClass = Literal[
    "battery", "battery_charging", "carbon_monoxide", "cold", "connectivity", "door", "garage_door", "gas", "heat",
    "light", "lock", "moisture", "motion", "moving", "occupancy", "opening", "plug", "power", "presence", "problem",
    "running", "safety", "smoke", "sound", "tamper", "update", "vibration", "window",
]


class AlertRule(StrictModel):
    name: str = Field(pattern=ID_PATTERN, description="The rule's id: its topic, entity and event type.")
    question: str | None = Field(
        None, min_length=1, max_length=1000,
        description="A yes/no question asked of the model after each description (one more inference).",
    )
    keywords: list[Annotated[str, Field(min_length=1, max_length=100)]] = Field(
        default_factory=list, max_length=32, description="Alert when the description contains any of these words.")
    regex: str | None = Field(None, max_length=500, description="Alert when the description matches this.")
    field: str | None = Field(None, pattern=FIELD_PATTERN,
                              description="Alert on this structured field (or the opencv backend's details).")
    above: float | None = Field(None, ge=-1e9, le=1e9, description="...when it is above this number.")
    equals: str | float | bool | None = Field(None, description="...when it equals this value.")
    off_after_s: float = Field(60.0, ge=1, le=86_400, description="The alert's binary sensor turns off after this.")
    cooldown_s: float = Field(300.0, ge=0, le=86_400, description="At least this long between two alerts of the rule; "
                              "the repeats in between are counted, not sent.")
    title: str | None = Field(None, min_length=1, max_length=64,
                              description="Its name in Home Assistant, as written (default: the name, spaced).")
    device_class: BinarySensorClass = Field(
        "problem", description="Home Assistant's device class of its binary sensor (e.g. problem, motion, occupancy).")
    icon: str | None = Field(None, pattern=r"^mdi:[a-z0-9-]+$", description="Its icon, e.g. mdi:package-variant "
                             "(default: the device class's).")

    @property
    def display_name(self) -> str:
        return self.title or self.name.replace("_", " ").replace("-", " ").capitalize()

    @field_validator("regex")
    @classmethod
    def _compiles(cls, pattern: str | None) -> str | None:
        if pattern is not None:
            try:
                re.compile(pattern)
            except re.error as exc:
                raise ValueError(f"not a regular expression: {exc}") from None
        return pattern

    @model_validator(mode="after")
    def _one_condition(self) -> AlertRule:
        kinds = [self.question is not None, bool(self.keywords), self.regex is not None, self.field is not None]
        if sum(kinds) != 1:
            raise ValueError("give exactly one of question, keywords, regex or field")
        if self.field is not None and (self.above is None) == (self.equals is None):
            raise ValueError("a field rule needs above or equals (one of them)")
        if self.field is None and (self.above is not None or self.equals is not None):
            raise ValueError("above and equals are for field rules")
        return self
