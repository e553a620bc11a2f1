"""The oldest release of every range in pyproject.toml, pinned, for the floor run.

CI and tox's ``floor`` environments install these over the newest ones, so
each declared range is tested at both ends. ``--install`` pip-installs them,
with this project and its test extra in the same resolution, into the
running interpreter; without it they are printed.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

#: Packages a floor drags in that are not ours to declare, at the release
#: that floor was made with: Flask 2.2 breaks on Werkzeug 3.
PARTNERS = {"flask": ["werkzeug==2.2.2"]}

RANGE = re.compile(r'"([A-Za-z0-9_.\-]+)(\[[^\]]*\])?>=([0-9][0-9.]*)')
#: The runtime dependencies and the test extra (read as text: Python 3.10 has no tomllib).
LISTS = re.compile(r"^(?:dependencies|test) = \[(.*?)^\]", re.M | re.S)


def floors() -> list[str]:
    text = (Path(__file__).resolve().parent.parent / "pyproject.toml").read_text()
    pins: dict[str, list[str]] = {}
    for block in LISTS.findall(text):
        for name, extras, version in RANGE.findall(block):
            pins[name.lower()] = ["%s%s==%s" % (name, extras or "", version)] + PARTNERS.get(
                name.lower(), []
            )
    return [pin for group in pins.values() for pin in group]


if __name__ == "__main__":
    if "--install" in sys.argv:
        root = Path(__file__).resolve().parent.parent
        subprocess.run(
            [sys.executable, "-m", "pip", "install", "-q", "-e", "%s[test]" % root, *floors()],
            check=True,
        )
    else:
        print("\n".join(floors()))
