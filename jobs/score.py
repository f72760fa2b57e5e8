"""Score every entity of the inference snapshot with the champion (Beam).

    python jobs/score.py --date 2026-03-01 [--use-case examples/churn]
"""

import sys

from precast.cli.main import main

if __name__ == "__main__":
    sys.exit(main(["run", "score", *sys.argv[1:]]))
