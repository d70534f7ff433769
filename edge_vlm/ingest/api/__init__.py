"""The HTTP API (``http:``): Ollama's and OpenAI's chat APIs on the board's NPU queue, for LLM
Vision, Frigate's GenAI and Home Assistant's Ollama integration (``app``: the routes; ``asks``:
reading a request; ``answers``: shaping an answer; ``server``: the server thread)."""
