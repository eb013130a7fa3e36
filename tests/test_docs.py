import re
import subprocess
from pathlib import Path

ROOT = Path(__file__).parents[1]
INTERNAL_NAME = re.compile(r"seed[\s#*_-]*0{2}[0-4]", re.IGNORECASE)  # also hyphenated, across a line break


def tracked(*patterns: str) -> list[Path]:
    listed = subprocess.run(
        ["git", "ls-files", *patterns], cwd=ROOT, capture_output=True, text=True, check=True
    )
    return [ROOT / name for name in listed.stdout.split()]


def test_sources_are_named_by_their_authors_not_by_internal_numbers():
    found = [
        f"{path.relative_to(ROOT)}:{text.count(chr(10), 0, match.start()) + 1}"
        for path in tracked("*.py", "*.yaml", "*.md")
        for text in [path.read_text()]
        for match in INTERNAL_NAME.finditer(text)
    ]
    assert found == []


def test_every_source_named_in_the_readme_is_in_the_references():
    references = (ROOT / "docs" / "references.md").read_text()
    readme = (ROOT / "README.md").read_text()
    for name in (
        "Lan et al.", "Macura", "Lim et al.", "Lees", "Barsch and Eilertsen", "Adebayo et al.",
        "Olah et al.", "Simonyan et al.", "Mordvintsev et al.", "Long et al.",
    ):  # fmt: skip
        assert name in readme and name in references, name
