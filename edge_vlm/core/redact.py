"""Keep credentials out of everything we print or publish."""

from __future__ import annotations

import re

# scheme://user:password@host: everything up to the last @ before a space or quote (a password may
# hold @, / or ?, unencoded; a path with an @ in it is masked too: better too much than a password)
_USERINFO = re.compile(r"([a-zA-Z][a-zA-Z0-9+.-]*://)[^\s'\"<>]*@")
# ?user=admin&password=..., ;pwd=... (cameras that take credentials in the query or the path)
_SECRET_PARAMETER = re.compile(r"((?:pass(?:word)?|pwd|token|key|secret|auth)=)[^&;#\s/]*", re.IGNORECASE)


def redact(text: str) -> str:
    """``text`` with the credentials of every URL in it replaced by ``***``."""
    return _SECRET_PARAMETER.sub(r"\1***", _USERINFO.sub(r"\1***:***@", text))


def redact_url(url: str) -> str:
    """One URL, credentials masked even when they hold characters no URL may (a space): everything
    between ``://`` and its last ``@``."""
    scheme, separator, rest = url.partition("://")
    if separator and "@" in rest:
        url = f"{scheme}://***:***@{rest.rpartition('@')[2]}"
    return redact(url)


def holds_password(url: str) -> bool:
    """Whether ``url`` carries ``user:password@``, read as redact_url reads it: up to the last ``@``,
    whatever the password holds (``/``, ``#``, ``@``)."""
    return ":" in url.partition("://")[2].rpartition("@")[0]
