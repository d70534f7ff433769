"""The HTTP API: the board's model for Ollama and OpenAI clients (LLM Vision, Frigate's GenAI, Home
Assistant's Ollama integration), on the same NPU queue as the cameras."""

from __future__ import annotations

import ipaddress
import re
from urllib.parse import urlsplit

from pydantic import Field, field_validator, model_validator

from edge_vlm.config.base import CREDENTIAL_NAME_PATTERN, ENV_NAME_PATTERN, StrictModel

MODEL_NAME_PATTERN = r"^[a-z0-9][a-z0-9._-]{0,63}(:[a-z0-9._-]{1,32})?$"
MIN_KEY = 16  # characters of an API key: a short one is guessed
KEY_PATTERN = r"[A-Za-z0-9._~-]+"  # what an API key is made of: safe in a URL's path (/k/<key>), no whitespace
HOST_PATTERN = r"([A-Za-z0-9]([A-Za-z0-9.-]{0,252})|\[[0-9A-Fa-f:.]{2,45}\])(:[0-9]{1,5})?"  # name or address[:port]


def key_problem(key: str | None) -> str | None:
    """What is wrong with an API key for ``http:`` (None: nothing)."""
    if key is None or len(key) < MIN_KEY:
        return f"the API key is unset, empty or shorter than {MIN_KEY} characters: set a long random one " \
               "(openssl rand -hex 24)"
    if not re.fullmatch(KEY_PATTERN, key):
        return "the API key holds characters other than letters, digits, '.', '_', '~' and '-' (it goes in URLs): " \
               "set one made by openssl rand -hex 24"
    return None


class HttpApiConfig(StrictModel):
    enabled: bool = Field(False, description="Serve the Ollama and OpenAI APIs. Off by default.")
    bind: str = Field(
        "127.0.0.1", description="The address to listen on: 127.0.0.1 (this board only), the board's LAN "
        "address, or 0.0.0.0 (every interface).",
    )
    port: int = Field(11434, ge=0, le=65535, description="The port; 11434 is Ollama's, where its clients look "
                      "(0: any free port, said in the log).")
    api_key_env: str | None = Field(
        None, pattern=ENV_NAME_PATTERN, description="Environment variable holding the API key clients send "
        "(Authorization: Bearer <key>).",
    )
    api_key_credential: str | None = Field(
        None, pattern=CREDENTIAL_NAME_PATTERN, description="Or the systemd credential holding it "
        "(LoadCredential=).",
    )
    allow_no_key: bool = Field(
        False, description="Serve without an API key: only on a loopback bind address (127.0.0.1, ::1).",
    )
    model: str = Field(
        "edge-vlm", pattern=MODEL_NAME_PATTERN, description="The model name clients ask for (and see in "
        "the model lists); 'edge-vlm:latest' is the same.",
    )
    max_waiting_per_client: int = Field(
        2, ge=1, le=32, description="Requests one client (by its address) may have waiting or running at "
        "once; more get 429 (Too Many Requests) with Retry-After.",
    )
    max_request_mb: float = Field(
        20.0, gt=0, le=200, description="The largest request body, images included (base64); larger ones "
        "are refused with 413 before they are read.",
    )

    image_url_hosts: list[str] = Field(
        default_factory=list, max_length=32, description="Hosts whose http(s) image URLs may be sent "
        "(OpenAI image_url), fetched by the board: 'host' (any port) or 'host:port', e.g. "
        "homeassistant.local:8123. Empty (the default): only images sent in the request (data URIs).",
    )

    @field_validator("image_url_hosts")
    @classmethod
    def _hosts(cls, hosts: list[str]) -> list[str]:
        for host in hosts:
            if not re.fullmatch(HOST_PATTERN, host):
                raise ValueError(f"{host!r} is no host name or address with an optional port (camera.lan, "
                                 "192.168.1.20, homeassistant.local:8123, [fd00::5]:8123)")
        return [host.lower() for host in hosts]

    def fetches(self, url: str) -> bool:
        """Whether an image URL may be fetched: http(s), its host (and port) one of image_url_hosts."""
        parts = urlsplit(url)
        try:
            port = parts.port or {"http": 80, "https": 443}.get(parts.scheme)
        except ValueError:  # a port out of range
            return False
        host = (parts.hostname or "").lower()
        named = f"[{host}]" if ":" in host else host  # an IPv6 address is written in brackets with a port
        # no user@ and no backslash: urllib reads the host of such a URL otherwise than urlsplit does
        plain = "@" not in parts.netloc and "\\" not in url
        return parts.scheme in ("http", "https") and bool(host) and plain and (
            named in self.image_url_hosts or f"{named}:{port}" in self.image_url_hosts)

    @field_validator("bind")
    @classmethod
    def _an_address(cls, bind: str) -> str:
        try:
            ipaddress.ip_address(bind)
        except ValueError:
            raise ValueError("an IP address, e.g. 127.0.0.1, 192.168.1.10 or 0.0.0.0") from None
        return bind

    @model_validator(mode="after")
    def _a_key_unless_loopback(self) -> HttpApiConfig:
        if self.api_key_env is not None and self.api_key_credential is not None:
            raise ValueError("set api_key_env or api_key_credential, not both")
        keyed = self.api_key_env is not None or self.api_key_credential is not None
        if self.allow_no_key and keyed:
            raise ValueError("allow_no_key with an API key set: choose one")
        if self.allow_no_key and not ipaddress.ip_address(self.bind).is_loopback:
            raise ValueError(f"allow_no_key serves anyone who can reach {self.bind}: only on a loopback bind "
                             "address (127.0.0.1); set api_key_env or api_key_credential instead")
        if self.enabled and not keyed and not self.allow_no_key:
            raise ValueError("the API needs a key: set api_key_env or api_key_credential (or allow_no_key, on "
                             "a loopback bind address only)")
        return self

    @property
    def model_names(self) -> tuple[str, ...]:
        """The names a client may ask for this model by."""
        return (self.model, self.model.removesuffix(":latest") if ":" in self.model else f"{self.model}:latest")
