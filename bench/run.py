"""`python bench/run.py publish|score|lookup|all [--quick]`: the same as `python -m bench ...`."""

import sys
from pathlib import Path

if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the repo root, as -m does
    from bench.cli import main

    sys.exit(main())
