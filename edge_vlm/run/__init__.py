"""The program around the service: ``edge-vlm run`` (its signals, reloads, systemd's notify socket
and watchdog) and the demo."""
