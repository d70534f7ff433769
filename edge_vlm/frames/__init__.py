"""Frames: a camera's image bytes checked, decoded upright and stamped (``decode``), the checks of
compressed data against its header (``completeness``) and the conversion to 8-bit RGB (``pixels``)."""

from edge_vlm.frames.decode import ACCEPTED_FORMATS, Frame, decode_image

__all__ = ["ACCEPTED_FORMATS", "Frame", "decode_image"]
