"""A stand-in for rknn-toolkit-lite2's ``rknnlite`` package (aarch64-only; it needs the board)."""
