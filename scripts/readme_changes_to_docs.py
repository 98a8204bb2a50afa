"""Move a branch's README.md edits into the documentation pages they now belong to.

The long README was split into docs/ (issue 18.1). A branch that still edits README.md sections
conflicts when merged; this applies its README changes to the docs page holding the same text:

    python scripts/readme_changes_to_docs.py BASE BRANCH   # e.g. $(git merge-base HEAD b) b

BASE is the commit the branch's README edits start from (its merge base with a pre-split main).
Each hunk is matched by its unchanged and removed lines (headings left out, since the pages
shifted their levels); a hunk found on no page, or on several, is printed for a person to place.
Then resolve README.md to the short front page (`git checkout --ours README.md`).
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def hunk_blocks(hunk: str) -> tuple[str, str]:
    old: list[str] = []
    new: list[str] = []
    for line in hunk.splitlines():
        tag, text = line[:1], line[1:]
        if tag in (" ", ""):
            old.append(text)
            new.append(text)
        elif tag == "-":
            old.append(text)
        elif tag == "+":
            new.append(text)
    for index in (0, -1):
        while old and new and old[index] == new[index] and (not old[index] or old[index][0] == "#"):
            old.pop(index)
            new.pop(index)
    return "\n".join(old), "\n".join(new)


def main(base: str, branch: str) -> int:
    diff = subprocess.run(
        ["git", "diff", "-U2", base, branch, "--", "README.md"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    pages = {page: page.read_text() for page in (ROOT / "docs").rglob("*.md")}
    unplaced = 0
    for hunk in re.split(r"^@@.*@@.*\n", diff, flags=re.M)[1:]:
        old, new = hunk_blocks(hunk)
        found = [page for page, text in pages.items() if old in text]
        if len(found) != 1:
            unplaced += 1
            print(f"NOT PLACED (found on {len(found)} pages):\n{hunk}", file=sys.stderr)
            continue
        pages[found[0]] = pages[found[0]].replace(old, new, 1)
        print(f"applied to {found[0].relative_to(ROOT)}")
    for page, text in pages.items():
        if page.read_text() != text:
            page.write_text(text)
    return 1 if unplaced else 0


if __name__ == "__main__":
    if len(sys.argv) != 3:
        sys.exit(__doc__)
    sys.exit(main(sys.argv[1], sys.argv[2]))
