"""Compare challenger and champion on the same test set; promote or reject.

    python jobs/gate.py --date 2026-03-01 [--use-case examples/churn]
"""

import sys

from precast.cli.main import main

if __name__ == "__main__":
    sys.exit(main(["run", "gate", *sys.argv[1:]]))
