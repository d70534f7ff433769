"""The TLS context of the broker connection: our CA file (or the system's), an optional client
certificate, the broker's certificate always verified, its name checked unless turned off.

Built here rather than by paho's ``tls_set`` for one reason: when the handshake fails (an unknown
CA, a name mismatch), paho drops the half-open TLS socket without closing it, and every retry
would leave one for the garbage collector. Our sockets close themselves when their handshake fails.
"""

from __future__ import annotations

import ssl
from pathlib import Path

from edge_vlm.config.mqtt import TlsConfig
from edge_vlm.core.errors import ConfigError


class _SelfClosingSSLSocket(ssl.SSLSocket):
    def do_handshake(self, block: bool = False) -> None:
        try:
            super().do_handshake(block)
        except BaseException:
            self.close()
            raise


def _encrypted(key_file: Path | None) -> bool:
    try:
        return key_file is not None and b"ENCRYPTED" in key_file.read_bytes()[:4096]
    except OSError:
        return False


def client_context(tls: TlsConfig) -> ssl.SSLContext:
    """ConfigError when a file cannot be read, is no PEM, or the key does not fit the certificate."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)  # CERT_REQUIRED, hostname checked, TLS 1.2 at least
    context.sslsocket_class = _SelfClosingSSLSocket
    setting = "ca_file"
    try:
        if tls.ca_file is not None:
            context.load_verify_locations(cafile=str(tls.ca_file))
        else:
            context.load_default_certs()
        if tls.cert_file is not None:
            setting = "cert_file and key_file"
            # An empty passphrase: an encrypted key fails here, instead of OpenSSL asking on the terminal.
            context.load_cert_chain(str(tls.cert_file), str(tls.key_file) if tls.key_file else None, password="")
    except ssl.SSLError as exc:
        reason = str(exc.reason or exc)
        if setting != "ca_file" and _encrypted(tls.key_file or tls.cert_file):
            reason = "the key is encrypted: edge_vlm needs it unencrypted (and readable by its user only)"
        elif "PEM lib" in reason:
            reason = "not a PEM certificate and its key"
        raise ConfigError([f"mqtt.tls.{setting}: cannot be used: {reason}"]) from None
    except OSError as exc:
        raise ConfigError([f"mqtt.tls.{setting}: cannot be read: {exc.strerror or exc}"]) from None
    context.check_hostname = tls.verify_hostname
    return context
