"""Why the broker connection failed, in words that say what to change.

One sentence per cause, for the one error line the daemon logs (it retries with backoff meanwhile):
a CONNACK refusal (credentials, client id, protocol), a failed TLS handshake (unknown CA, hostname
mismatch, expired certificate, client certificate wanted or refused), nothing listening, a host
name that does not resolve. None of them holds the password: only the names of the settings and
of the environment variable or credential it comes from.
"""

from __future__ import annotations

import re
import socket
import ssl
import threading
from typing import Any

from edge_vlm.config.mqtt import MqttConfig

# How long the probe after a drop waits for the broker to accept a TCP connection (less than the
# shortest wait before the reconnect it informs: reconnect_min_delay, doubled after a short connection).
PROBE_TIMEOUT_S = 1.0
# A CONNACK reason code that means: these credentials are not accepted.
BAD_CREDENTIALS = (0x86, 0x87, 0x8C)  # bad user name or password, not authorized, bad authentication method
_SSL_REASON = re.compile(r"\[SSL: ([A-Z0-9_]+)\]")


def password_source(config: MqttConfig) -> str:
    """Where the password comes from, by name: never the password itself."""
    sources = []
    if config.password_env is not None:
        sources.append(f"${config.password_env}")
    credential = config.password_credential  # systemd's LoadCredential=
    if credential is not None:
        sources.append(f"the credential {credential} ($CREDENTIALS_DIRECTORY/{credential})")
    return " / ".join(sources)


def credentials_hint(config: MqttConfig) -> str:
    if config.username is None:
        return "the broker wants a user name: set mqtt.username and mqtt.password_env (or password_credential)"
    source = password_source(config)
    if not source:
        return (f"check mqtt.username ({config.username!r}); no password is configured (mqtt.password_env or "
                "mqtt.password_credential)")
    return f"check mqtt.username ({config.username!r}) and the password in {source}"


def connack_problem(reason_value: int, reason_name: str, config: MqttConfig) -> str:
    """The broker answered CONNECT with a refusal (``reason_value`` is the MQTT 5 reason code;
    paho maps an MQTT 3.1.1 return code to it)."""
    broker = f"{config.host}:{config.port}"
    what = f"broker {broker} refused the connection: {reason_name}"
    if reason_value in BAD_CREDENTIALS:
        hint = credentials_hint(config)
        if reason_value == 0x87:
            hint += "; or the broker does not let this user connect at all"
        return f"{what} — {hint}"
    hints = {
        0x84: "the broker does not speak this MQTT version: set mqtt.protocol to the other one (\"5\" or \"3.1.1\")",
        0x85: "the broker refuses mqtt.client_id: use letters and digits, at most 23 for some brokers",
        0x8A: "the broker bans this client: see its configuration",
        0x88: "the broker is not available now: see its log",
        0x89: "the broker is busy: see its log",
        0x9F: "the broker limits the connection rate",
    }
    return f"{what} — {hints[reason_value]}" if reason_value in hints else what


def connect_failure_problem(exc: BaseException | None, config: MqttConfig) -> str:  # noqa: PLR0911 - one per cause
    """The connection attempt raised ``exc`` (None: paho gave no reason) before any MQTT was spoken."""
    broker = f"{config.host}:{config.port}"
    if isinstance(exc, ssl.SSLCertVerificationError):
        return _certificate_problem(str(exc.verify_message or exc.reason or exc), config)
    if isinstance(exc, ssl.SSLError):
        return tls_problem(str(exc.reason or exc), str(exc), config)
    if isinstance(exc, ConnectionResetError) and config.tls.enabled:  # the broker hung up on our ClientHello
        return (f"TLS: broker {broker} closed the connection during the handshake — is that port a TLS listener? "
                "(unset mqtt.tls.enabled for a plain one)")
    if isinstance(exc, ConnectionRefusedError):
        return (f"cannot reach MQTT broker {broker}: connection refused (nothing listens there) — is the broker "
                "running, and are mqtt.host and mqtt.port right?")
    if isinstance(exc, socket.gaierror):
        return (f"cannot reach MQTT broker {broker}: the host name {config.host!r} does not resolve "
                f"({exc.strerror}) — check mqtt.host and the board's DNS")
    if isinstance(exc, TimeoutError):
        return (f"cannot reach MQTT broker {broker}: no answer in time — check mqtt.host, mqtt.port and the "
                "network (a firewall that drops packets looks like this)")
    if isinstance(exc, OSError):
        return f"cannot reach MQTT broker {broker}: {exc.strerror or exc}"
    if exc is not None:
        return f"cannot reach MQTT broker {broker}: {type(exc).__name__}: {exc}"
    return f"cannot reach MQTT broker {broker}"


def _certificate_problem(verify_message: str, config: MqttConfig) -> str:
    tls = config.tls
    text = f"TLS: certificate verify failed: {verify_message} (broker {config.host}:{config.port})"
    message = verify_message.lower()
    if "mismatch" in message:
        return (f"{text} — mqtt.host must be a name the broker's certificate lists (its subjectAltName), "
                "or give the broker a certificate for that name")
    if "expired" in message or "not yet valid" in message:
        return f"{text} — renew the broker's certificate, or check the board's clock"
    if tls.ca_file is None:
        return (f"{text} — set mqtt.tls.ca_file to the CA that signed the broker's certificate (the system's CA "
                "store does not trust it)")
    return f"{text} — mqtt.tls.ca_file ({tls.ca_file}) must hold the CA that signed the broker's certificate"


def tls_problem(reason: str, text: str, config: MqttConfig) -> str:
    """A TLS failure other than our check of the broker's certificate: ``reason`` is OpenSSL's code
    (WRONG_VERSION_NUMBER, TLSV13_ALERT_CERTIFICATE_REQUIRED, ...), ``text`` the whole message."""
    broker = f"{config.host}:{config.port}"
    tls = config.tls
    code = reason.upper()
    if "CERTIFICATE_VERIFY_FAILED" in code:
        return _certificate_problem(text, config)
    if "WRONG_VERSION_NUMBER" in code or "RECORD_LAYER" in code or "PACKET_LENGTH_TOO_LONG" in code:
        return (f"TLS: handshake with {broker} failed ({reason.lower()}) — the port does not speak TLS: "
                "use the broker's TLS port, or unset mqtt.tls.enabled for a plain listener")
    if "CERTIFICATE_REQUIRED" in code or ("HANDSHAKE_FAILURE" in code and tls.cert_file is None):
        return (f"TLS: broker {broker} wants a client certificate ({reason.lower()}) — set mqtt.tls.cert_file "
                "and mqtt.tls.key_file")
    if "ALERT" in code and ("CERTIFICATE" in code or "UNKNOWN_CA" in code or "BAD_CERT" in code):
        return (f"TLS: broker {broker} refused our client certificate ({reason.lower()}) — mqtt.tls.cert_file "
                "must be signed by a CA the broker trusts (its cafile), and valid now")
    return f"TLS: handshake with {broker} failed: {text}"


def closed_before_connack_problem(socket_error: str | None, config: MqttConfig) -> str:
    """The broker closed the connection before answering CONNECT; ``socket_error``: what paho
    reported about the socket, if anything."""
    broker = f"{config.host}:{config.port}"
    if socket_error is not None and (found := _SSL_REASON.search(socket_error)) is not None:
        return tls_problem(found.group(1), socket_error, config)
    detail = f" ({socket_error.removeprefix('failed to receive on socket: ')})" if socket_error else ""
    if not config.tls.enabled:
        return (f"broker {broker} closed the connection before answering{detail} — if that port is a TLS "
                "listener, set mqtt.tls.enabled and mqtt.tls.ca_file; else see the broker's log")
    return f"broker {broker} closed the connection before answering{detail} — see the broker's log"


def dropped_problem(reason_value: int, reason_name: str, config: MqttConfig, client_id: str, *,
                    repeated: bool) -> str | None:
    """The broker dropped a connection soon after accepting it (``repeated``: again). None: nothing
    to explain (yet): a single drop without a telling reason is a warning, not an error."""
    what = f"broker {config.host}:{config.port} dropped the connection soon after accepting it ({reason_name})"
    if reason_value == 0x8E:  # Session taken over
        return (f"{what} — another client connected with the same client id {client_id!r}: give each daemon its "
                "own node_id (or mqtt.client_id)")
    if reason_value in (0x87, 0x90, 0x99):  # not authorized, topic name invalid, payload format invalid
        user = f"user {config.username!r}" if config.username is not None else "anonymous clients"
        return f"{what} — check the broker ACL for {user}: some brokers drop a client that publishes where it may not"
    if repeated:
        return (f"{what}, again, and took us back at once — another client with the same client id {client_id!r}? "
                "a broker that drops clients for ACL denials? See the broker's log")
    return None


def reason_text(reason: Any) -> str:
    """The name of a paho ReasonCode (or whatever paho passed)."""
    return str(getattr(reason, "getName", lambda: reason)())


class ListeningProbe:
    """Whether the broker still took TCP connections right after it dropped ours.

    A broker that dropped just us (another client took our client id's session; a broker that
    disconnects clients on ACL denials) is still listening; one that restarted, or went away, is
    not. The drop itself cannot tell: MQTT 3.1.1 gives no reason, and Mosquitto 2.0 gives none in
    MQTT 5 either (no DISCONNECT 0x8E "Session taken over", nor 0x8B "Server shutting down"). So
    the "same client id?" hint needs this evidence, else plain broker restarts in a row got it.

    Runs in a thread of its own (paho's network thread must not wait on a connect); ``listening``
    is None until known. ``address``: the peer of the dropped connection (no name to resolve).
    """

    def __init__(self, address: tuple[str, int] | None) -> None:
        self.listening: bool | None = None
        if address is not None:
            threading.Thread(target=self._probe, args=(address,), name="mqtt-drop-probe", daemon=True).start()

    def _probe(self, address: tuple[str, int]) -> None:
        try:
            with socket.create_connection(address, timeout=PROBE_TIMEOUT_S):
                self.listening = True
        except OSError:  # refused (nothing listens: a restart), or no answer in time
            self.listening = False


def peer_address(sock: Any) -> tuple[str, int] | None:
    """The broker's address of a connected socket (paho's ``Client.socket()``), None if unknown."""
    try:
        peer = sock.getpeername()
    except (AttributeError, OSError):
        return None
    return (str(peer[0]), int(peer[1])) if isinstance(peer, tuple) and len(peer) >= 2 else None
