"""Frames: where a trigger's frame comes from (``grab``: the camera's source under ``sources/``, a
request's image, a Frigate event's snapshot) and the capture pool that grabs off the dispatcher
(``capture``); every image checked, decoded upright and stamped (``decode``), its compressed data
checked against its header (``completeness``) and converted to 8-bit RGB (``pixels``)."""

from edge_vlm.frames.decode import ACCEPTED_FORMATS, Frame, decode_image

__all__ = ["ACCEPTED_FORMATS", "Frame", "decode_image"]
