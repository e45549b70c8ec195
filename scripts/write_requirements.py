"""Writes requirements.txt from pyproject.toml: Hugging Face Spaces install requirements.txt, not the project.

    python scripts/write_requirements.py           # rewrite requirements.txt
    python scripts/write_requirements.py --check   # exit 1 if requirements.txt is out of date

The runtime dependencies of `[project] dependencies` are copied as they are, followed by what only a Space needs
(`SPACES_ONLY`). tests/test_requirements.py compares the committed file with this script's output.
"""

from __future__ import annotations

import sys
from pathlib import Path

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10
    import tomli as tomllib  # type: ignore[no-redef]

ROOT = Path(__file__).resolve().parent.parent
PYPROJECT = ROOT / "pyproject.toml"
REQUIREMENTS = ROOT / "requirements.txt"

# Installed on a Space besides the project's own dependencies: `spaces` gives the diffusion pipeline a ZeroGPU
# slot (pipeline/gpu.py uses it when it can be imported; off ZeroGPU its decorator does nothing).
SPACES_ONLY = ["spaces"]

HEADER = """\
# Generated from pyproject.toml by scripts/write_requirements.py; do not edit by hand.
# Hugging Face Spaces install this file (not pyproject.toml); tests/test_requirements.py checks it is current.
"""


def runtime_dependencies(pyproject: Path = PYPROJECT) -> list[str]:
    with open(pyproject, "rb") as handle:
        return list(tomllib.load(handle)["project"]["dependencies"])


def render(pyproject: Path = PYPROJECT) -> str:
    lines = [HEADER.rstrip("\n"), *runtime_dependencies(pyproject), "", "# Only on a Space:", *SPACES_ONLY]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    text = render()
    if args == ["--check"]:
        if not REQUIREMENTS.is_file() or REQUIREMENTS.read_text() != text:
            print("requirements.txt is out of date: run `python scripts/write_requirements.py`", file=sys.stderr)
            return 1
        return 0
    if args:
        print(__doc__, file=sys.stderr)
        return 2
    REQUIREMENTS.write_text(text)
    print(f"wrote {REQUIREMENTS.relative_to(ROOT)} ({len(text.splitlines())} lines)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
