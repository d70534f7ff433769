"""A mosquitto that wants TLS, passwords and ACLs, with certificates made by ``openssl`` for the test.

Listeners (all on 127.0.0.1):
- ``tls_port``: TLS with a server certificate for localhost / 127.0.0.1 (subjectAltName), signed by
  the test CA; user name and password from ``password_file``.
- ``wrong_name_port``: the same CA, but a certificate that names only ``elsewhere.invalid``.
- ``client_cert_port``: TLS that requires a client certificate signed by the test CA; the
  certificate's common name is the user name (``use_identity_as_username``).
- ``plain_port``: no TLS, user name and password.

Mosquitto's ``acl_file`` never refuses a subscription (2.0.11 grants it and only filters what it
delivers), so a broker made with ``dynsec_acls`` uses the dynamic security plugin instead of the
password and ACL files: it checks subscriptions when they are made and answers a denied one with
SUBACK 0x87 (MQTT 5) or 0x80 (MQTT 3.1.1), as other brokers (EMQX, HiveMQ) do.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import shutil
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

from tests.support.broker import START_TIMEOUT_S, Mosquitto, free_port

CLIENT_CERT_USER = "edge-cert"
DYNSEC_PLUGIN = Path("/usr/lib/x86_64-linux-gnu/mosquitto_dynamic_security.so")


def dynsec_plugin() -> Path | None:
    """The dynamic security plugin's library, if installed."""
    found = [p for p in (DYNSEC_PLUGIN, Path("/usr/lib/mosquitto_dynamic_security.so"),
                         Path("/usr/lib/aarch64-linux-gnu/mosquitto_dynamic_security.so")) if p.exists()]
    return found[0] if found else None


def _dynsec_config(users: dict[str, str], acls: list[tuple[str, str, bool]]) -> str:
    """The plugin's JSON: ``users`` share one role with ``acls`` (acltype, topic, allow)."""
    clients = []
    for user, password in users.items():
        salt = os.urandom(12)
        digest = hashlib.pbkdf2_hmac("sha512", password.encode(), salt, 101)
        clients.append({"username": user, "password": base64.b64encode(digest).decode(),
                        "salt": base64.b64encode(salt).decode(), "iterations": 101, "roles": [{"rolename": "edge"}]})
    role = {"rolename": "edge", "acls": [{"acltype": t, "topic": topic, "allow": allow} for t, topic, allow in acls]}
    default = {"publishClientSend": False, "publishClientReceive": False, "subscribe": False, "unsubscribe": True}
    return json.dumps({"clients": clients, "roles": [role], "groups": [], "defaultACLAccess": default})


def _openssl(*args: str | Path) -> None:
    subprocess.run(["openssl", *map(str, args)], check=True, capture_output=True)


@dataclass(frozen=True)
class Pki:
    ca: Path
    server_cert: Path
    server_key: Path
    wrong_name_cert: Path
    wrong_name_key: Path
    client_cert: Path
    client_key: Path
    other_ca: Path  # a CA that signed none of these


def _key_and_request(directory: Path, name: str, subject: str) -> tuple[Path, Path]:
    key, request = directory / f"{name}.key", directory / f"{name}.csr"
    _openssl("req", "-new", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
             "-keyout", key, "-subj", subject, "-out", request)
    return key, request


def _ca(directory: Path, name: str) -> tuple[Path, Path]:
    key, cert = directory / f"{name}.key", directory / f"{name}.crt"
    _openssl("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
             "-keyout", key, "-out", cert, "-days", "2", "-subj", f"/CN=edge_vlm test {name}",
             "-addext", "basicConstraints=critical,CA:TRUE", "-addext", "keyUsage=critical,keyCertSign,cRLSign")
    return cert, key


def _signed(directory: Path, name: str, subject: str, extensions: str, ca: tuple[Path, Path]) -> tuple[Path, Path]:
    key, request = _key_and_request(directory, name, subject)
    ext = directory / f"{name}.ext"
    ext.write_text(extensions)
    cert = directory / f"{name}.crt"
    _openssl("x509", "-req", "-in", request, "-CA", ca[0], "-CAkey", ca[1], "-CAcreateserial", "-days", "2",
             "-out", cert, "-extfile", ext)
    return cert, key


def make_pki(directory: Path) -> Pki:
    if shutil.which("openssl") is None:
        raise RuntimeError("openssl is not on PATH")
    directory.mkdir(parents=True, exist_ok=True)
    ca = _ca(directory, "ca")
    other_ca, _ = _ca(directory, "other-ca")
    server = "basicConstraints=CA:FALSE\nkeyUsage=critical,digitalSignature\nextendedKeyUsage=serverAuth\n"
    server_cert, server_key = _signed(directory, "server", "/CN=localhost",
                                      server + "subjectAltName=DNS:localhost,IP:127.0.0.1\n", ca)
    wrong_cert, wrong_key = _signed(directory, "wrong-name", "/CN=elsewhere.invalid",
                                    server + "subjectAltName=DNS:elsewhere.invalid\n", ca)
    client_cert, client_key = _signed(
        directory, "client", f"/CN={CLIENT_CERT_USER}",
        "basicConstraints=CA:FALSE\nkeyUsage=critical,digitalSignature\nextendedKeyUsage=clientAuth\n", ca)
    return Pki(ca[0], server_cert, server_key, wrong_cert, wrong_key, client_cert, client_key, other_ca)


class SecureMosquitto(Mosquitto):
    """mosquitto with the listeners above; ``users``: name -> password; ``acl``: the acl_file's text."""

    def __init__(self, directory: Path, pki: Pki, users: dict[str, str], acl: str = "",
                 dynsec_acls: list[tuple[str, str, bool]] | None = None) -> None:
        super().__init__(directory)
        self.pki = pki
        self.tls_port = self.port
        self.wrong_name_port = free_port()
        self.client_cert_port = free_port()
        self.plain_port = free_port()
        passwords = directory / "passwords"
        passwords.write_text("")
        for user, password in users.items():
            subprocess.run(["mosquitto_passwd", "-b", str(passwords), user, password], check=True, capture_output=True)
        acl_file = directory / "acl"
        acl_file.write_text(acl)
        if dynsec_acls is None:
            security = f"password_file {passwords}\nacl_file {acl_file}\n"
        else:
            plugin = dynsec_plugin()
            if plugin is None:
                raise RuntimeError("mosquitto's dynamic security plugin is not installed")
            dynsec = directory / "dynamic-security.json"
            dynsec.write_text(_dynsec_config(users, dynsec_acls))
            security = f"plugin {plugin}\nplugin_opt_config_file {dynsec}\n"
        tls = f"cafile {pki.ca}\n"
        self.conf.write_text(
            "user root\n"
            "per_listener_settings false\n"
            "persistence false\n"
            f"log_dest file {self.log}\n"
            "log_type all\n"
            "allow_anonymous false\n"
            f"{security}"
            f"listener {self.tls_port} 127.0.0.1\n{tls}certfile {pki.server_cert}\nkeyfile {pki.server_key}\n"
            f"listener {self.wrong_name_port} 127.0.0.1\n{tls}"
            f"certfile {pki.wrong_name_cert}\nkeyfile {pki.wrong_name_key}\n"
            f"listener {self.client_cert_port} 127.0.0.1\n{tls}certfile {pki.server_cert}\nkeyfile {pki.server_key}\n"
            "require_certificate true\nuse_identity_as_username true\n"
            f"listener {self.plain_port} 127.0.0.1\n",
        )

    def start(self) -> None:
        """Start, and wait until every listener listens (the base class waits for the first only)."""
        super().start()
        deadline = time.monotonic() + START_TIMEOUT_S
        for port in (self.wrong_name_port, self.client_cert_port, self.plain_port):
            while True:
                try:
                    socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
                    break
                except OSError:
                    if time.monotonic() > deadline:
                        raise RuntimeError(f"mosquitto did not listen on {port} within {START_TIMEOUT_S} s") from None
                    time.sleep(0.01)

    def log_lines(self) -> list[str]:
        return self.log.read_text(errors="replace").splitlines() if self.log.exists() else []
