"""The inference worker: a child process that owns the NPU, and its supervisor in the daemon."""
