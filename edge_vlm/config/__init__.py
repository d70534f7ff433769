"""Configuration: the YAML schema, its loader and the start-up checks."""

from edge_vlm.config.loader import ConfigFile, load_config, load_config_text
from edge_vlm.config.models import AppConfig, CameraConfig, OpencvBackendConfig
from edge_vlm.config.preflight import load_checked, mqtt_password, preflight

__all__ = [
    "AppConfig",
    "CameraConfig",
    "ConfigFile",
    "OpencvBackendConfig",
    "load_checked",
    "load_config",
    "load_config_text",
    "mqtt_password",
    "preflight",
]
