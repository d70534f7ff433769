"""Which ABI a ``librkllmrt.so`` speaks.

The runtime has no version function, and 1.2.1 to 1.2.3 export the same symbols as 1.3.0 while
their structs are incompatible (rkllm.h of each release; rknn-llm#509), so ``auto`` identifies the official aarch64
releases by their git blob id (what ``git hash-object`` prints) and refuses anything else.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

from edge_vlm.core.errors import BackendError

# Git blob ids of rkllm-runtime/Linux/librkllm_api/aarch64/librkllmrt.so per release tag.
RELEASES = {
    "a026cbe60905af0ad6c07dfa2fcc339dd4b9fa10": "1.0.1",
    "66dfdc7c25cdca9ccf9930798118e17abf7592ff": "1.1.0",
    "bfca051375287d0f5aa754a7b8681b4ede52e259": "1.1.1",
    "e8f4afc38c7394beeff83003dbc772412f649a44": "1.1.2",
    "68e79327e82f675413956be615f48c62ccd0f16e": "1.1.3",
    "3bb8cb6172c4c06e1c622c8f8c579888378784f4": "1.1.4",
    "d45ee9b8dcb9ef27d7dd875ce3be3d5e6dfb654d": "1.2.0",
    "db041c01bba5e0e8f624bb2ff50d48825dde1bfc": "1.2.1b1",
    "6b9439d59f2fe4bb8ef5ee2b09c102f1bf993da9": "1.2.1",
    "8ed9cca16f8d5ad8f7cdd7d393de6561182b3395": "1.2.2",
    "0084abc34ab43359cfa9fd5d4c92ece34127dbd0": "1.2.3",
    "34167b32f99cb7ab19e21fb579fb750d96b878f1": "1.3.0",
}
SUPPORTED = {"1.2.1": "1.2", "1.2.2": "1.2", "1.2.3": "1.2", "1.3.0": "1.3"}


def git_blob_id(path: Path) -> str:
    data = path.read_bytes()
    return hashlib.sha1(b"blob %d\0" % len(data) + data, usedforsecurity=False).hexdigest()


def release_of(library: Path) -> str | None:
    """The official release ``library`` is, None for a build this version does not know."""
    return RELEASES.get(git_blob_id(library))


def unknown_build_hint(library: Path, configured: str) -> str:
    """What to say when a runtime this version cannot identify fails or crashes while loading: the
    ABI may be the other one ("" when the library is an official release, or unreadable)."""
    try:
        if release_of(library) is not None:
            return ""
    except OSError:
        return ""
    other = {"1.2": "1.3", "1.3": "1.2"}.get(configured)
    if other is None:
        return ""
    return (f"; {library} is not an official RKLLM runtime release edge_vlm knows, bound as ABI {configured} "
            f"because backend.llm.runtime_version says so: if it is a {other}.x runtime, set "
            f'backend.llm.runtime_version to "{other}" (the wrong ABI crashes or fails while loading)')


def resolve_abi(library: Path, configured: str) -> str:
    """The ABI ("1.2" or "1.3") to bind ``library`` with."""
    try:
        blob = git_blob_id(library)
    except OSError as exc:
        if configured != "auto":
            return configured  # loading it says what is wrong
        raise BackendError(f"{library}: cannot read the RKLLM runtime: {exc.strerror}") from None
    release = RELEASES.get(blob)
    if release is not None and release not in SUPPORTED:
        raise BackendError(
            f"{library} is RKLLM runtime {release}, which edge_vlm does not support: install runtime "
            "1.2.1-1.2.3 or 1.3.x with a .rkllm model converted for it",
        )
    if configured != "auto":
        official = SUPPORTED.get(release or "")
        if official is not None and official != configured:
            raise BackendError(
                f"{library} is RKLLM runtime {release} (ABI {official}), but backend.llm.runtime_version is "
                f'"{configured}": set it to "{official}" or "auto" (the wrong ABI crashes while loading)')
        return configured
    if release is None:
        raise BackendError(
            f"{library} is not an official RKLLM runtime release this version knows (git blob {blob}); "
            'set backend.llm.runtime_version to "1.2" (runtime 1.2.1-1.2.3) or "1.3" (1.3.x) to match it',
        )
    return SUPPORTED[release]
