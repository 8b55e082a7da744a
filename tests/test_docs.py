"""The docs stay true: README.md and docs/*.md are checked against the repository as it is now.

- every relative link and image (Markdown `[..](..)` and HTML `src=`/`href=`) points at a file that exists, and
  every `#anchor` (in the same page or another Markdown file) matches one of its headings, by GitHub's slug rules;
- every `fer-realtime COMMAND` / `python -m fer_realtime COMMAND` shown in code is a command of the CLI as it is
  now (its `--help` exits 0), and every `--option` written after it on the same command line is one of its options;
- every repository file named in code (`benchmarks/….py`, `scripts/….py`, `tests/….py`, ...) exists;
- the README stays short, and its headline accuracy figures are those of weights/fer_cnn.metrics.json.

Commands added to the CLI later are not required to be documented here (only what the docs show must exist).
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DOCS = sorted([ROOT / "README.md", *(ROOT / "docs").glob("*.md")])

FENCE = re.compile(r"^\s*(```|~~~)")
HEADING = re.compile(r"^(#{1,6})\s+(.*?)\s*#*\s*$")
MD_LINK = re.compile(r"!?\[(?:[^\[\]]|\[[^\]]*\])*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")
HTML_LINK = re.compile(r"""<(?:img|a)\b[^>]*?\b(?:src|href)=["']([^"']+)["']""", re.IGNORECASE)
INLINE_CODE = re.compile(r"(`+)(.+?)\1")
COMMAND = re.compile(r"(?:^|(?<=[\s`(|;&$]))(?:fer-realtime|python -m fer_realtime)[ \t]+([a-z][a-z0-9-]*)(.*)")
OPTION = re.compile(r"(?<![\w-])(--[a-z][a-z0-9-]*)")
REPO_FILE = re.compile(r"(?<![\w./-])((?:benchmarks|scripts|tests|webapp|fer_realtime)/[\w/.-]+\.(?:py|md|json|sh))")


def split_code(text: str) -> tuple[list[str], list[str]]:
    """(prose lines, code lines): fenced blocks' lines are code; in prose, inline code spans become code lines and
    are blanked out of the prose (a link written inside backticks is not a link)."""
    prose, code, fenced = [], [], False
    for line in text.splitlines():
        if FENCE.match(line):
            fenced = not fenced
            continue
        if fenced:
            code.append(line)
            continue
        code.extend(m.group(2) for m in INLINE_CODE.finditer(line))
        prose.append(INLINE_CODE.sub(lambda m: " " * len(m.group(0)), line))
    return prose, code


def github_slug(heading: str) -> str:
    """The anchor GitHub gives a heading: its text (links and emphasis reduced to their words), lower case,
    punctuation removed except '-' and '_', spaces turned into '-'."""
    text = re.sub(r"!?\[([^\]]*)\]\([^)]*\)", r"\1", heading)  # links and images: their text
    text = re.sub(r"<[^>]+>", "", text)  # inline HTML
    text = text.strip().lower()
    text = re.sub(r"[^\w\- ]", "", text)  # unicode-aware: letters, digits, '_' stay
    return text.replace(" ", "-")


_anchor_cache: dict[Path, set[str]] = {}


def anchors(path: Path) -> set[str]:
    if path not in _anchor_cache:
        seen: dict[str, int] = {}
        found = set()
        fenced = False
        for line in path.read_text(encoding="utf-8").splitlines():
            if FENCE.match(line):
                fenced = not fenced
                continue
            match = None if fenced else HEADING.match(line)
            if match:
                slug = github_slug(match.group(2))
                n = seen.get(slug, 0)
                seen[slug] = n + 1
                found.add(slug if n == 0 else f"{slug}-{n}")
            for name in re.findall(r"""<a\s+(?:name|id)=["']([^"']+)["']""", line):
                found.add(name)
        _anchor_cache[path] = found
    return _anchor_cache[path]


def links(path: Path) -> list[str]:
    prose, _ = split_code(path.read_text(encoding="utf-8"))
    text = "\n".join(prose)
    return [m.group(1) for m in MD_LINK.finditer(text)] + [m.group(1) for m in HTML_LINK.finditer(text)]


def relative(path: Path) -> str:
    return str(path.relative_to(ROOT))


# ------------------------------------------------------------------------------------------------------------------
# Links and anchors
# ------------------------------------------------------------------------------------------------------------------


def test_docs_exist_and_the_readme_links_to_every_page():
    pages = [p for p in DOCS if p.parent.name == "docs"]
    assert len(pages) >= 10, [relative(p) for p in pages]
    readme_targets = {(ROOT / t.split("#")[0]).resolve() for t in links(ROOT / "README.md") if not t.startswith("#")}
    missing = [relative(p) for p in pages if p.resolve() not in readme_targets]
    assert not missing, f"docs pages the README does not link to: {missing}"
    for page in pages:  # each page starts with its title and the question it answers
        paragraphs = [p.strip() for p in page.read_text(encoding="utf-8").split("\n\n") if p.strip()]
        assert paragraphs[0].startswith("# "), f"{relative(page)} does not start with a title"
        question = paragraphs[1]
        assert question.startswith("*") and question.endswith("?*"), f"{relative(page)}: no question under the title"


@pytest.mark.parametrize("doc", DOCS, ids=relative)
def test_every_relative_link_and_anchor_resolves(doc):
    problems = []
    for target in links(doc):
        if re.match(r"^[a-z][a-z0-9+.-]*:", target, re.IGNORECASE):  # http:, https:, mailto:
            continue
        file_part, _, anchor = target.partition("#")
        destination = (doc.parent / file_part).resolve() if file_part else doc
        if not destination.exists():
            problems.append(f"{target}: {destination} does not exist")
            continue
        if destination.is_relative_to(ROOT) is False:
            problems.append(f"{target}: points outside the repository")
        if anchor:
            if destination.suffix != ".md":
                problems.append(f"{target}: an anchor into a file that is not Markdown")
            elif anchor not in anchors(destination):
                problems.append(f"{target}: no heading '#{anchor}' in {relative(destination)} "
                                f"(has: {', '.join(sorted(anchors(destination)))})")
    assert not problems, f"{relative(doc)}:\n" + "\n".join(problems)


def test_slugs_follow_github():
    assert github_slug("Where the campaign ended (2026-12-05)") == "where-the-campaign-ended-2026-12-05"
    assert github_slug("`FER_REALTIME_SERVE_URL`") == "fer_realtime_serve_url"
    assert github_slug("Where a frame's time goes") == "where-a-frames-time-goes"
    assert github_slug("train: recipes and runs") == "train-recipes-and-runs"
    assert github_slug("The camera from another machine (HTTPS)") == "the-camera-from-another-machine-https"
    assert github_slug("Tiles of 320 × 180") == "tiles-of-320--180"


# ------------------------------------------------------------------------------------------------------------------
# Commands
# ------------------------------------------------------------------------------------------------------------------


def _subcommands() -> dict[str, argparse.ArgumentParser]:
    from fer_realtime.cli.main import build_parser

    parser = build_parser()
    action = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return dict(action.choices)


def documented_commands() -> dict[str, dict[str, set[str]]]:
    """command -> {doc file -> options written after it}, from every code line of README.md and docs/."""
    found: dict[str, dict[str, set[str]]] = {}
    for doc in DOCS:
        _, code = split_code(doc.read_text(encoding="utf-8"))
        joined, pending = [], ""
        for line in code:  # shell continuation lines belong to the command above
            if line.rstrip().endswith("\\"):
                pending += line.rstrip()[:-1] + " "
                continue
            joined.append(pending + line)
            pending = ""
        for line in joined:
            for match in COMMAND.finditer(line):
                command, rest = match.group(1), match.group(2)
                rest = re.split(r"\s#|\||&&|;|\)", rest)[0]  # up to a comment or the next shell command
                rest = COMMAND.split(rest)[0]
                options = set(OPTION.findall(rest))
                found.setdefault(command, {}).setdefault(relative(doc), set()).update(options)
    return found


def test_docs_show_the_commands():
    shown = documented_commands()
    assert {"predict", "video", "evaluate", "train", "bench"} <= set(shown), sorted(shown)


def test_every_command_shown_in_the_docs_exists_with_its_options(capsys):
    from fer_realtime.cli.main import main

    commands = _subcommands()
    problems = []
    for command, where in sorted(documented_commands().items()):
        if command not in commands:
            problems.append(f"`fer-realtime {command}` (in {', '.join(sorted(where))}) is not a command; "
                            f"commands: {', '.join(commands)}")
            continue
        with pytest.raises(SystemExit) as exit_info, contextlib.redirect_stdout(io.StringIO()):
            main([command, "--help"])
        if exit_info.value.code not in (0, None):
            problems.append(f"`fer-realtime {command} --help` exited {exit_info.value.code}")
        known = set(commands[command]._option_string_actions)
        for doc, options in sorted(where.items()):
            unknown = sorted(options - known)
            if unknown:
                problems.append(f"{doc}: `fer-realtime {command}` has no option {', '.join(unknown)}")
    assert not problems, "\n".join(problems)


def test_the_installed_command_runs():
    """The `fer-realtime` entry point itself (not only the parser) answers --help and lists the shown commands."""
    script = Path(sys.executable).with_name("fer-realtime")
    command = [str(script)] if script.exists() else [sys.executable, "-m", "fer_realtime"]
    result = subprocess.run([*command, "--help"], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    for name in documented_commands():
        assert name in result.stdout, f"{name} is missing from `fer-realtime --help`:\n{result.stdout}"


def test_every_repository_file_named_in_the_docs_exists():
    missing = []
    for doc in DOCS:
        _, code = split_code(doc.read_text(encoding="utf-8"))
        for line in code:
            for name in REPO_FILE.findall(line):
                if not (ROOT / name).exists():
                    missing.append(f"{relative(doc)}: {name}")
    assert not missing, "\n".join(missing)


# ------------------------------------------------------------------------------------------------------------------
# The README itself
# ------------------------------------------------------------------------------------------------------------------


def test_readme_stays_short_with_its_pictures():
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    assert len(text.splitlines()) <= 200, "the README is meant to be read in a few screens: move detail to docs/"
    for image in ("docs/images/live.png", "docs/images/training.png"):
        assert image in text, f"the README does not show {image}"
        assert (ROOT / image).stat().st_size < 400_000, f"{image} is large: remake it with scripts/screenshots.py"


def test_readme_headline_accuracy_is_the_shipped_models():
    heldout = json.loads((ROOT / "weights" / "fer_cnn.metrics.json").read_text())["heldout"]
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    row = next(line for line in text.splitlines() if line.startswith("| FER2013 `val/`"))
    assert f"{heldout['accuracy']:.4f}" in row and f"{heldout['macro_recall']:.4f}" in row, (row, heldout)
    assert f"n {heldout['n']:,}" in row, row
    ece = next(line for line in text.splitlines() if "calibration error" in line and line.startswith("|"))
    assert f"{heldout['calibration_error']:.4f}" in ece, (ece, heldout["calibration_error"])
