"""Schedule: a trigger or a snapshot admitted as a job (``admission``: the gate, then the job made
and queued), and the NPU queue (``scheduler``), both under the one slot policy (edge_vlm.core.slots)."""
