"""`python -m hfan.train ...` / `hfan-train ...` (what torchrun launches): the same as `hfan train ...`."""
from __future__ import annotations

import sys


def main(argv: list[str] | None = None) -> int:
    from hfan.cli import main as hfan_main

    return hfan_main(["train", *(sys.argv[1:] if argv is None else argv)])


if __name__ == "__main__":
    sys.exit(main())
