"""models/README.md as a board owner follows it: its configuration snippets pass `edge-vlm check` with
the files it tells them to install, and every document names the model files one way."""

from __future__ import annotations

import re
import textwrap
from pathlib import Path

import pytest

from edge_vlm.config.loader import load_config_text
from edge_vlm.config.preflight import preflight
from edge_vlm.config.presets import PRESETS

ROOT = Path(__file__).parents[1]
MODELS_README = ROOT / "models" / "README.md"
MODELS = "/var/lib/edge-vlm/models/"
# edge_vlm's names: <family>-vision_<soc>.rknn, <family>-vision.onnx, <family>-<dtype>_<soc>.rkllm
NAME = re.compile(r"(?P<family>[a-z0-9.-]+?)-(?:vision_(?P<soc>rk3588|rk3576)\.rknn|vision\.onnx|"
                  r"(?P<dtype>w8a8|w4a16)(?:_g\d+)?_(?P<soc2>rk3588|rk3576)\.rkllm)")


def documents() -> list[Path]:
    return [ROOT / "README.md", MODELS_README, ROOT / "config" / "edge_vlm.example.yaml",
            *sorted((ROOT / "docs").glob("*.md"))]


def yaml_blocks(text: str) -> list[str]:
    return re.findall(r"^```yaml\n(.*?)^```", text, flags=re.S | re.M)


def test_every_document_names_the_model_files_the_same_way() -> None:
    named = {(str(path.relative_to(ROOT)), name) for path in documents()
             for name in re.findall(re.escape(MODELS) + r"([\w.-]+\.(?:rknn|rkllm|onnx))\b", path.read_text())}
    files = {name for _, name in named if name}
    assert len(files) >= 10  # the README, the example and one pair per family at least
    wrong = sorted((doc, name) for doc, name in named if name and
                   ((match := NAME.fullmatch(name)) is None or match["family"] not in PRESETS))
    assert not wrong, f"not <family>-vision_<soc>.rknn / <family>-<dtype>_<soc>.rkllm: {wrong}"
    # README's install step and the example configuration install and use the same pair
    readme = {n for d, n in named if d == "README.md"}
    example = {n for d, n in named if d == "config/edge_vlm.example.yaml"}
    assert example and example <= readme


def board_with_files(tmp_path: Path, config_text: str) -> Path:
    """A board tree holding every file the snippet names (non-empty, as after a download)."""
    board = tmp_path / "board"
    for path in re.findall(r"(/(?:var|usr|opt)/[^\s,}]+)", config_text):
        target = board / path.lstrip("/")
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(b"\0" * 64)
        target.chmod(0o755)
    return board


def snippets() -> list[str]:
    """Each whole `backend:` snippet, then each encoder of "The other encoders" put into the first."""
    blocks = yaml_blocks(MODELS_README.read_text())
    whole = [block for block in blocks if block.startswith("backend:")]
    encoders = [chunk for block in blocks if block.startswith("  #") and "encoder:" in block
                for chunk in block.split("\n\n")]
    assert len(whole) == len(PRESETS) - 1 and len(encoders) == 2  # qwen2-vl-7b has no snippet of its own
    first = whole[0]
    rknn_line = next(line for line in first.splitlines() if line.startswith("  encoder:"))
    swapped = [first.replace(rknn_line + "\n", textwrap.indent(textwrap.dedent(
        "\n".join(line for line in chunk.splitlines() if not line.lstrip().startswith("#"))), "  ") + "\n")
        for chunk in encoders]
    return whole + swapped


def snippet_id(snippet: str) -> str:
    named = re.search(r"type: (?:imgenc|onnx)", snippet) or re.search(r"family: \S+", snippet)
    return named.group(0) if named else snippet[:20]


@pytest.mark.parametrize("snippet", snippets(), ids=snippet_id)
def test_each_snippet_passes_check_with_the_files_it_names(snippet: str, tmp_path: Path) -> None:
    text = "cameras: [{id: front_door}]\n" + snippet
    loaded = load_config_text(text, "models/README.md")
    assert loaded.config.backend.type == "vlm"
    assert preflight(loaded, {}, board_with_files(tmp_path, text)) == []


def test_the_install_commands_put_the_files_where_the_recommended_snippet_and_the_example_look() -> None:
    text = MODELS_README.read_text()
    install = text.split("## Install them under edge_vlm's names", 1)[1].split("## ", 1)[0]
    installed = set(re.findall(re.escape(MODELS) + r"([\w.-]+\.(?:rknn|rkllm))", install))
    recommended = next(block for block in yaml_blocks(text) if "family: qwen3-vl-2b" in block)
    example = (ROOT / "config" / "edge_vlm.example.yaml").read_text()
    assert installed == set(re.findall(re.escape(MODELS) + r"([\w.-]+\.(?:rknn|rkllm))", recommended))
    assert installed == set(re.findall(re.escape(MODELS) + r"([\w.-]+\.(?:rknn|rkllm))", example))
    # and imgenc is where "Building imgenc" installs it
    executables = {path for document in documents() for path in
                   re.findall(r"executable: (\S+)", document.read_text())}
    assert executables == set(re.findall(r"install -D -m 0755 \S+ (\S+)", text)) == {"/opt/rknn-llm/imgenc"}
