"""Publish the predictions as a new snapshot and repoint predictions_current.

    python jobs/publish.py --date 2026-03-01 [--use-case examples/churn]
"""

import sys

from precast.cli.main import main

if __name__ == "__main__":
    sys.exit(main(["run", "publish", *sys.argv[1:]]))
