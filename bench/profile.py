"""Summaries of py-spy's raw (collapsed-stack) profiles: where the server's samples went.

`bench/run.py --profile DIR` records the gunicorn tree with `py-spy record --format raw` during
the measured window at the top concurrency, and writes `<scenario>-c<N>.top.txt` next to each
profile with this summary. The raw file itself loads into speedscope or inferno for a flame
graph.
"""

from __future__ import annotations

import re
import sys
from collections import Counter
from pathlib import Path

# "function (path/to/file.py:123)" -> "function (file.py)": lines of one function add up.
_FRAME = re.compile(r"^(?P<func>.*?) \((?P<path>[^()]*?)(?::\d+)?\)$")
_TOP = 40


def _short(frame: str) -> str:
    match = _FRAME.match(frame.strip())
    if not match:
        return frame.strip()
    path = match["path"]
    for marker in ("site-packages/", "/lib/python3"):
        if marker in path:
            path = path.split(marker, 1)[1]
            break
    else:
        path = path.replace(str(Path(__file__).resolve().parent.parent) + "/", "")
    return f"{match['func']} ({path})"


def summarize(raw: str, top: int = _TOP) -> str:
    """Inclusive and self sample shares per function, largest first."""
    inclusive: Counter[str] = Counter()
    own: Counter[str] = Counter()
    total = 0
    for line in raw.splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack or not count.isdigit():
            continue
        samples = int(count)
        frames = [_short(f) for f in stack.split(";") if not f.startswith(("process ", "thread "))]
        if not frames:
            continue
        total += samples
        for frame in set(frames):
            inclusive[frame] += samples
        own[frames[-1]] += samples
    if not total:
        return "no samples\n"
    lines = [f"{total} samples (non-idle) of the gunicorn tree", "", "inclusive:"]
    lines += [f"{n / total:7.1%}  {frame}" for frame, n in inclusive.most_common(top)]
    lines += ["", "self:"]
    lines += [f"{n / total:7.1%}  {frame}" for frame, n in own.most_common(top)]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    for name in sys.argv[1:]:
        print(f"== {name}")
        print(summarize(Path(name).read_text()))
