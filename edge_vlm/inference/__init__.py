"""Inference: a job made of an admitted frame (``job_maker``), run by the worker thread
(``runner``) on a backend (``backends/``: opencv, vlm, each in a supervised worker process,
``worker/``), and its answer read (``answers``)."""
