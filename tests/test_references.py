"""Every Markdown document the code, tests, scripts and documents name is one a reader of this
repository can open (issue 14: docstrings cited a rockchip.md that was never in it)."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

ROOT = Path(__file__).parents[1]
# Other projects' documents, named as such ("rknn-llm's benchmark.md")
ELSEWHERE = {"benchmark.md"}
# tests that make up documents to check the checks
MADE_UP = {"tests/test_references.py", "tests/test_docs.py"}
MENTION = re.compile(r"(?<![\w/.-])((?:[\w.-]+/)*[\w-]+\.md)\b")


def tracked() -> list[Path]:
    listed = subprocess.run(["git", "ls-files", "--cached", "--others", "--exclude-standard"], cwd=ROOT,
                            capture_output=True, text=True, check=True)
    return [ROOT / name for name in listed.stdout.split() if (ROOT / name).is_file()]


def test_every_named_markdown_document_is_in_the_repository() -> None:
    files = tracked()
    documents = {path.relative_to(ROOT).as_posix() for path in files if path.suffix == ".md"}
    basenames = {Path(name).name for name in documents}
    missing = []
    for path in files:
        if path.suffix in {".jpg", ".png", ".so", ".whl"} or path.relative_to(ROOT).as_posix() in MADE_UP:
            continue
        text = path.read_text(errors="replace")
        for number, line in enumerate(text.splitlines(), 1):
            for name in MENTION.findall(line):
                relative = (path.parent / name).resolve()
                if name in documents or name in ELSEWHERE or relative.is_file() or (
                        "/" not in name and name in basenames):
                    continue
                missing.append(f"{path.relative_to(ROOT)}:{number}: {name}")
    assert not missing, missing
