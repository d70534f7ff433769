"""edge_vlm: camera frames described in words on a Rockchip NPU, published to Home Assistant."""

__version__ = "0.1.0"
