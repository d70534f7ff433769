"""What every part of the configuration shares: the strict base model and the id patterns."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

# Camera and node ids become MQTT topic levels and Home Assistant ids: nothing that can inject a
# topic level or a wildcard, nothing HA's discovery topic matcher refuses.
ID_PATTERN = r"^[a-z0-9][a-z0-9_-]{0,63}$"
# A topic prefix we publish under: one or more levels of safe characters.
TOPIC_PREFIX_PATTERN = r"^[A-Za-z0-9_-]+(/[A-Za-z0-9_-]+)*$"
ENV_NAME_PATTERN = r"^[A-Za-z_][A-Za-z0-9_]*$"
CLIENT_ID_PATTERN = r"^[A-Za-z0-9_-]+$"
# A systemd credential's file name (LoadCredential=NAME:...): one path component, never . or ..
CREDENTIAL_NAME_PATTERN = r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,254}$"

# What each pattern means, for error messages a person can act on.
PATTERN_HINTS = {
    ID_PATTERN: "use 1 to 64 lower-case letters, digits, _ and -, starting with a letter or digit",
    TOPIC_PREFIX_PATTERN: "use topic levels of letters, digits, _ and - separated by /, no wildcards",
    ENV_NAME_PATTERN: "an environment variable name: letters, digits and _, not starting with a digit",
    CLIENT_ID_PATTERN: "use letters, digits, _ and - only",
    CREDENTIAL_NAME_PATTERN: "a systemd credential name (LoadCredential=NAME:...): letters, digits, _, . and -, "
    "not starting with a dot",
}

LogLevel = Literal["DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"]

DEFAULT_PROMPT = "Describe what is happening in this camera image in one short sentence."


class StrictModel(BaseModel):
    """Unknown keys are errors: a typo in the YAML must not be silently ignored."""

    model_config = ConfigDict(extra="forbid", frozen=True)




class WorkerSupervision(StrictModel):
    """How the daemon supervises a backend's worker process (both backends run in one: native code
    that a frame can crash, OpenCV's detectors or a vendor runtime, never runs in the daemon)."""

    job_timeout_s: float = Field(120.0, ge=1, le=3600, description="A job still running after this is aborted.")
    abort_grace_s: float = Field(
        10.0, ge=1, le=300, description="After an abort, the worker is killed if it has not stopped within this "
        "(rkllm_abort takes effect late: rknn-llm#400).",
    )
    load_timeout_s: float = Field(300.0, ge=5, le=3600, description="Longest wait for the models to load.")
    restart_max_delay_s: float = Field(
        60.0, ge=1, le=3600, description="Longest wait between restarts of a crashed worker (doubles from 1 s).",
    )
