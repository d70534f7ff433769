"""Settings of the built-in opencv backend: a whole-scene analyzer that needs no model files."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from edge_vlm.config.base import WorkerSupervision


class OpencvBackendConfig(WorkerSupervision):
    type: Literal["opencv"] = Field(
        "opencv", description="opencv: built-in analyzer (people, faces, light, motion); no model files.",
    )
    analysis_size: int = Field(
        640, ge=160, le=1920,
        description="Frames are scaled down to this many pixels on their long side before analysis; "
        "people shorter than a fifth of it are not found.",
    )
    people_min_confidence: float = Field(
        1.2, ge=0.0, le=5.0, description="Minimum HOG detector score to count a person (false detections "
        "score up to about 0.9, varying with the frame's resolution).",
    )
    detect_faces: bool = Field(True, description="Count frontal faces (Haar cascade).")
