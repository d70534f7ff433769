"""edge_vlm: camera frames described in words on a Rockchip NPU, published to Home Assistant.

The folders are the stages of one event's data flow, in order:

    ingest/ ──► frames/ ──► gate.py ──► schedule/ ──► inference/ ──► publish/
    (router,     (sources,    (admit or   (admission,    (job maker,    (outcomes, alerts,
     triggers,    capture,     skip, before the NPU       worker, backends, ordered publisher,
     requests)    decoding)    any work)   queue)         answers)       discovery)

A stage imports the foundation (config/, mqtt/, core/, camera_state), itself and the stages
before it: the values it receives are defined there. What it hands
on goes through the callables service.py gave it; service.py builds them, run/ runs it (edge-vlm
run, systemd). tests/test_layers.py holds the package to that.
"""

__version__ = "0.1.0"
