"""What the documents show is right: README.md, docs/*.md and models/README.md.

- every relative link leads to a file of this repository, and a ``#anchor`` to a heading in it
  (GitHub's slugs);
- every ``edge-vlm`` command in a ```sh block names a real subcommand with options its parser
  accepts, and every ``scripts/X`` it runs is an executable script;
- every ```yaml block of README.md and docs/*.md is an edge_vlm configuration that the loader
  accepts, or Home Assistant's (automations, scripts: run in a real Home Assistant by tests/ha).
  models/README.md's configurations are tested with the files they name (tests/test_models_readme.py).

Each check is a function of a document's text, and ``test_each_check_finds_a_broken_example``
shows that each one fails on a broken example.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import re
import shlex
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from edge_vlm.__main__ import build_parser, main
from edge_vlm.config import load_config_text
from edge_vlm.config.models import AppConfig
from edge_vlm.core.errors import ConfigError

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
DOCS = sorted((ROOT / "docs").glob("*.md"))
MODELS = ROOT / "models" / "README.md"
DOCUMENTS = [README, *DOCS, MODELS]
CONFIG_DOCUMENTS = [README, *DOCS]

EDGE_VLM = "edge-vlm"  # the program, wherever it is installed (/opt/edge-vlm/bin, .venv/bin)
CONTROL = {"&&", "||", ";", "|", "&", "(", ")"}
# Keys of Home Assistant's YAML (an automation, a script, a blueprint): tests/ha pastes those.
HOME_ASSISTANT_KEYS = {"alias", "triggers", "conditions", "actions", "sequence", "blueprint", "mode"}
CONFIG_KEYS = set(AppConfig.model_fields)
# Frigate's GenAI settings (docs/http-api.md): the keys its genai section takes, 0.15 to 0.18.
FRIGATE_GENAI_KEYS = {"enabled", "provider", "base_url", "api_key", "model", "provider_options", "runtime_options",
                      "prompt", "object_prompts"}
# A snippet without cameras is completed with this one (a configuration needs a camera).
A_CAMERA = "\ncameras: [{id: front_door}]\n"
VLM_BACKEND = ("\nbackend: {type: vlm, family: qwen2-vl-2b, encoder: {type: rknn, model: /models/encoder.rknn}, "
               "llm: {model: /models/model.rkllm, library: /usr/lib/librkllmrt.so}}\n")
# Snippets that are part of a configuration on purpose, by (document, section): what completes them, and why.
PARTIAL: dict[tuple[str, str], tuple[str, str]] = {
    ("docs/configuration.md", "Structured answers"):
        (VLM_BACKEND, "structured answers need the vlm backend, which the section names but does not repeat"),
}


HEADING = re.compile(r"^ {0,3}#{1,6}\s+(.*?)(?:\s+#+)?\s*$")


@dataclass(frozen=True)
class Block:
    """A fenced code block: its info string, first line number, text (its indent removed) and the
    heading it is under."""

    info: str
    line: int
    text: str
    section: str


def split_fences(text: str) -> tuple[list[str], list[Block]]:
    """The document's lines outside code blocks (fenced lines blanked, so line numbers stay) and its blocks."""
    prose: list[str] = []
    blocks: list[Block] = []
    opened: tuple[str, str, str, int] | None = None  # indent, fence, info, line
    body: list[str] = []
    section = ""
    for number, line in enumerate(text.splitlines(), 1):
        if opened is None:
            start = re.match(r"^(\s*)(`{3,}|~{3,})\s*([^`\s]*)", line)
            if start:
                opened, body = (start.group(1), start.group(2), start.group(3), number), []
                prose.append("")
            else:
                prose.append(line)
                section = heading.group(1) if (heading := HEADING.match(line)) else section
            continue
        indent, fence, info, first = opened
        if re.fullmatch(rf"\s*{re.escape(fence[0])}{{{len(fence)},}}\s*", line):
            blocks.append(Block(info, first + 1, "\n".join(body) + "\n", section))
            opened = None
        else:
            body.append(line[len(indent):] if line.startswith(indent) else line.lstrip())
        prose.append("")
    assert opened is None, f"a code block opened on line {opened[3]} is never closed"
    return prose, blocks


# Links and anchors

CODE_SPAN = re.compile(r"(`+)(?:[^`\n]|\n(?![ \t]*\n))+?\1(?!`)")


def slug(heading: str) -> str:
    """GitHub's anchor for a heading: its text without markup, lower case, punctuation dropped
    (except - and _), spaces as -."""
    text = re.sub(r"`([^`]*)`", r"\1", heading)
    text = re.sub(r"!?\[([^\]]*)\]\([^)]*\)", r"\1", text)
    return re.sub(r"[^\w\- ]", "", text.strip().lower()).replace(" ", "-")


def anchors(text: str) -> set[str]:
    """Every heading's anchor; a repeated one gets -1, -2, … as on GitHub."""
    found: set[str] = set()
    seen: dict[str, int] = {}
    for line in split_fences(text)[0]:
        heading = HEADING.match(line)
        if heading:
            name = slug(heading.group(1))
            count = seen.get(name, 0)
            seen[name] = count + 1
            found.add(name if count == 0 else f"{name}-{count}")
    return found


def links(text: str) -> list[tuple[int, str]]:
    """(line, target) of every inline and reference-style link outside code."""
    prose = "\n".join(split_fences(text)[0])
    # A code span (which may go on over a line break, not over a blank line) holds no link.
    prose = CODE_SPAN.sub(lambda span: "code" + "\n" * span.group(0).count("\n"), prose)
    found = []
    for number, line in enumerate(prose.splitlines(), 1):
        found += [(number, target) for target in re.findall(r"\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)", line)]
        found += [(number, target) for target in re.findall(r"^\s*\[[^\]]+\]:\s*<?(\S+?)>?(?:\s|$)", line)]
    return found


def link_problems(document: Path, text: str) -> list[str]:
    problems = []
    for number, target in links(text):
        if re.match(r"^[a-zA-Z][a-zA-Z0-9+.-]*:|^//", target):  # https:, mailto:: not ours to check
            continue
        where = f"{document.relative_to(ROOT)}:{number}: {target}"
        path, _, anchor = target.partition("#")
        if not path:  # this document's own heading
            if anchor not in anchors(text):
                problems.append(f"{where}: {document.relative_to(ROOT)} has no heading #{anchor}")
            continue
        file = (document.parent / path).resolve()
        if not file.is_relative_to(ROOT):
            problems.append(f"{where}: leads out of the repository")
        elif not file.exists():
            problems.append(f"{where}: no such file {file.relative_to(ROOT)}")
        elif anchor and file.suffix != ".md":
            problems.append(f"{where}: an anchor into a file that is not Markdown")
        elif anchor and anchor not in anchors(file.read_text()):
            problems.append(f"{where}: {file.relative_to(ROOT)} has no heading #{anchor}")
    return problems


# Commands

def without_comment(line: str) -> str:
    """The line up to a shell comment: a # at the start of a word, outside quotes."""
    quote = ""
    for index, char in enumerate(line):
        if quote:
            quote = "" if char == quote else quote
        elif char in "'\"":
            quote = char
        elif char == "#" and (index == 0 or line[index - 1].isspace()):
            return line[:index]
    return line


def commands(block: str) -> list[list[str]]:
    """Each simple command of a shell block, as words (continued lines joined, comments dropped)."""
    found: list[list[str]] = []
    for line in block.replace("\\\n", " ").splitlines():
        lexer = shlex.shlex(without_comment(line), posix=True, punctuation_chars=True)
        lexer.whitespace_split = True
        words: list[str] = []
        for word in lexer:
            if word in CONTROL:
                found.append(words)
                words = []
            else:
                words.append(word)
        found.append(words)
    return [words for words in found if words]


def program(words: list[str]) -> list[str]:
    """The command without its ``sudo``, ``env`` and variable assignments in front."""
    while words and (words[0] in ("sudo", "env") or re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*=.*", words[0])):
        words = words[1:]
    return words


def argparse_problem(arguments: list[str]) -> str | None:
    """What ``edge-vlm``'s parser says about these arguments, or None if it takes them."""
    said = io.StringIO()
    try:
        with contextlib.redirect_stderr(said), contextlib.redirect_stdout(io.StringIO()):
            build_parser().parse_args(arguments)
    except SystemExit as exc:
        if exc.code not in (0, None):  # --help and --version end with 0
            return said.getvalue().strip().splitlines()[-1]
    return None


def command_problems(document: Path, text: str) -> list[str]:
    problems = []
    for block in split_fences(text)[1]:
        if block.info not in ("sh", "bash", "shell", "console"):
            continue
        for command in commands(block.text):
            words = program(command)
            if not words:
                continue
            where = f"{document.relative_to(ROOT)}:{block.line}+: {shlex.join(words)}"
            if Path(words[0]).name == EDGE_VLM and (problem := argparse_problem(words[1:])):
                problems.append(f"{where}: {problem}")
            elif re.match(r"^(\./)?scripts/", words[0]):
                script = ROOT / words[0]
                if not (script.is_file() and os.access(script, os.X_OK)):
                    problems.append(f"{where}: {words[0]} is no executable script")
    return problems


# Configurations

def kind(data: Any) -> str:
    """``home assistant``, ``frigate``, ``config`` or ``other``: what a YAML block is."""
    if not isinstance(data, dict) or not data:
        return "other"
    if data.keys() == {"genai"} and isinstance(data["genai"], dict) and data["genai"].keys() <= FRIGATE_GENAI_KEYS:
        return "frigate"
    scripts = [value for value in data.values() if isinstance(value, dict)]
    if data.keys() & CONFIG_KEYS:  # a stray key (a mis-indented `mode:`) leaves it a configuration
        return "config" if data.keys() <= CONFIG_KEYS else "other"
    if HOME_ASSISTANT_KEYS & data.keys() or any({"alias", "sequence"} <= script.keys() for script in scripts):
        return "home assistant"
    return "other"


def config_problems(document: Path, text: str) -> list[str]:
    problems = []
    for block in split_fences(text)[1]:
        if block.info not in ("yaml", "yml"):
            continue
        where = f"{document.relative_to(ROOT)}:{block.line}"
        try:
            data = yaml.safe_load(block.text)
        except yaml.YAMLError as exc:
            problems.append(f"{where}: not YAML: {exc}")
            continue
        found = kind(data)
        if found in ("home assistant", "frigate"):
            continue
        if found == "other":
            problems.append(f"{where}: neither an edge_vlm configuration nor Home Assistant's: "
                            f"{sorted(data) if isinstance(data, dict) else type(data).__name__}")
            continue
        completion, _why = PARTIAL.get((document.relative_to(ROOT).as_posix(), block.section), ("", ""))
        config = block.text + completion + ("" if "cameras" in data else A_CAMERA)
        try:
            load_config_text(config, where)
        except ConfigError as exc:
            problems += [f"{where}: {problem}" for problem in exc.problems]
    return problems


def name(path: Path) -> str:
    return path.relative_to(ROOT).as_posix()


def test_there_are_documents_to_check() -> None:
    assert len(DOCS) >= 5, DOCS
    assert all(document.exists() for document in DOCUMENTS)


@pytest.mark.parametrize("document", DOCUMENTS, ids=name)
def test_every_relative_link_resolves(document: Path) -> None:
    assert link_problems(document, document.read_text()) == []


@pytest.mark.parametrize("document", DOCUMENTS, ids=name)
def test_every_command_is_one_edge_vlm_takes(document: Path) -> None:
    assert command_problems(document, document.read_text()) == []


@pytest.mark.parametrize("document", CONFIG_DOCUMENTS, ids=name)
def test_every_configuration_is_valid(document: Path) -> None:
    assert config_problems(document, document.read_text()) == []


def test_every_partial_snippet_is_there() -> None:
    """A completion whose section was renamed or whose block went away is no silent exception."""
    sections = {(name(document), block.section) for document in CONFIG_DOCUMENTS
                for block in split_fences(document.read_text())[1] if block.info == "yaml"}
    assert set(PARTIAL) - sections == set()


def test_the_readme_links_every_docs_page() -> None:
    linked = {(ROOT / target.partition("#")[0]).resolve() for _line, target in links(README.read_text())}
    assert [name(page) for page in DOCS if page not in linked] == []
    # a first page, not the reference: the reference goes into docs/ (issue 14: it had grown to 88 KB)
    assert len(README.read_text().split()) < 2000


def test_the_documents_hold_what_the_checks_look_for() -> None:
    """The checks see the blocks: not vacuous because a fence or a prefix changed."""
    texts = {document: document.read_text() for document in DOCUMENTS}
    assert sum(len(links(text)) for text in texts.values()) > 30
    edge_vlm_commands = [words for text in texts.values() for block in split_fences(text)[1]
                         if block.info == "sh" for words in map(program, commands(block.text))
                         if words and Path(words[0]).name == EDGE_VLM]
    assert len(edge_vlm_commands) >= 6, edge_vlm_commands
    kinds = [kind(yaml.safe_load(block.text)) for document in CONFIG_DOCUMENTS
             for block in split_fences(texts[document])[1] if block.info == "yaml"]
    assert kinds.count("config") >= 6 and kinds.count("home assistant") >= 3, kinds


def test_slugs_are_githubs() -> None:
    assert slug("Cameras: where frames come from, and what asks for a description") == (
        "cameras-where-frames-come-from-and-what-asks-for-a-description")
    assert slug("The built-in `opencv` backend") == "the-built-in-opencv-backend"
    assert slug("Notify fast, enrich later") == "notify-fast-enrich-later"
    assert slug("Check the board: `edge-vlm check` and `edge-vlm doctor`") == (
        "check-the-board-edge-vlm-check-and-edge-vlm-doctor")
    assert anchors("# A\n## A\n```sh\n# not a heading\n```\n") == {"a", "a-1"}


BROKEN = ROOT / "docs" / "broken.md"  # never written: the examples are checked as text


@pytest.mark.parametrize(("check", "text", "said"), [
    (link_problems, "[x](../README.md#no-such-heading)\n", "has no heading #no-such-heading"),
    (link_problems, "[x](nowhere.md)\n", "no such file docs/nowhere.md"),
    (link_problems, "[x](#elsewhere)\n# Here\n", "has no heading #elsewhere"),
    (link_problems, "[x](../../outside.md)\n", "leads out of the repository"),
    (link_problems, "See [the models](models/README.md).\n", "no such file docs/models/README.md"),
    (command_problems, "```sh\nedge-vlm chek -c x.yaml\n```\n", "invalid choice: 'chek'"),
    (command_problems, "```sh\nsudo env A=1 /opt/edge-vlm/bin/edge-vlm doctor --config=x --verbose\n```\n",
     "unrecognized arguments: --verbose"),
    (command_problems, "```sh\n  ls && edge-vlm describe -c x.yaml  # the image is missing\n```\n",
     "the following arguments are required: image"),
    (command_problems, "```sh\n./scripts/no-such-script --fast\n```\n", "is no executable script"),
    (command_problems, "```sh\nscripts/setup --test; scripts/setup.py\n```\n", "scripts/setup.py is no executable"),
    (config_problems, "```yaml\nmqtt:\n  host: mqtt.lan\n  port: 0\n```\n", "mqtt.port: 0: Input should be"),
    (config_problems, "```yaml\ncameras:\n  - id: Front Door\n```\n", "cameras[0].id: 'Front Door'"),
    (config_problems, "```yaml\nprofiles:\n  porch: {prompt: 'At {camera}: {nonsense}'}\n```\n", "nonsense"),
    (config_problems, "```yaml\nbackend:\n  type: vlm\n  famly: qwen2-vl-2b\n```\n", "famly"),
    (config_problems, "```yaml\nhost: mqtt.lan\ncameras: []\n```\n", "neither an edge_vlm configuration"),
    # a mis-indented camera key is not taken for Home Assistant's `mode`
    (config_problems, "```yaml\ncameras:\n  - id: gate\n    source: {type: rtsp, url: 'rtsp://c/s'}\n"
                      "mode: on_demand\n```\n", "neither an edge_vlm configuration"),
    (command_problems, "```sh\n/usr/local/bin/edge-vlm chek\n```\n", "invalid choice: 'chek'"),
])
def test_each_check_finds_a_broken_example(check: Any, text: str, said: str) -> None:
    problems = check(BROKEN, text)
    assert any(said in problem for problem in problems), problems


def test_home_assistant_yaml_and_good_examples_pass() -> None:
    ha = ("```yaml\nalias: A\ntriggers:\n  - trigger: mqtt\n    topic: x\nactions: []\n```\n"
          "```yaml\nask:\n  alias: Ask\n  sequence: []\n```\n")
    assert config_problems(BROKEN, ha) == []
    good = ("[up](../README.md#install-on-the-board) [here](#here)\n# Here\n"
            "```sh\nsudo edge-vlm doctor -c /etc/edge-vlm/edge_vlm.yaml  # it's fine\n./scripts/test -n 0\n"
            "edge-vlm describe photo.jpg \\\n  --ask \"Is it #1?\"\n```\n"
            "```yaml\nlanguage: German\nprofiles:\n  porch: {prompt: 'It is {time}'}\n```\n")
    assert (link_problems(BROKEN, good), command_problems(BROKEN, good), config_problems(BROKEN, good)) == ([], [], [])


def test_the_check_sample_is_what_check_prints(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """docs/configuration.md's `edge-vlm check -c bad.yaml`, run on a file with its two mistakes at its lines."""
    text = (ROOT / "docs" / "configuration.md").read_text()
    sample = text.split("```\n$ edge-vlm check -c bad.yaml\n", 1)[1].split("```", 1)[0].splitlines()
    lines = ["# padding"] * 16 + ["mqtt:", "  port: 0"] + ["# padding"] * 43 + ["cameras:", "  - id: a",
                                                                               "  - id: Drive way"]
    bad = tmp_path / "bad.yaml"
    bad.write_text("\n".join(lines) + "\n")
    with pytest.raises(SystemExit):
        main(["check", "-c", str(bad)])
    printed = capsys.readouterr().err.replace(str(bad), "bad.yaml").splitlines()
    assert printed == sample


def json_problems(document: Path, text: str) -> list[str]:
    """A ```json block holds JSON values (one, or several one after another, as messages on a topic)."""
    problems = []
    decoder = json.JSONDecoder()
    for block in split_fences(text)[1]:
        if block.info != "json":
            continue
        rest, values = block.text.strip(), 0
        while rest:
            try:
                _, end = decoder.raw_decode(rest)
            except json.JSONDecodeError as exc:
                problems.append(f"{name(document)}:{block.line}: not JSON: {exc}")
                break
            rest, values = rest[end:].lstrip(), values + 1
    return problems


def test_every_json_block_is_json() -> None:
    assert [problem for document in DOCUMENTS for problem in json_problems(document, document.read_text())] == []
    assert json_problems(BROKEN, '```json\n{"a": 1}\n{"b": 2,}\n```\n') != []
    assert json_problems(BROKEN, '```json\n{"a": 1}\n{"b":\n 2}\n```\n') == []
