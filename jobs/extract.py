"""Extract raw logs into clean events and quarantine (Spark).

    spark-submit jobs/extract.py --date 2026-03-01 [--use-case examples/churn]
"""

import sys

from precast.cli.main import main

if __name__ == "__main__":
    sys.exit(main(["run", "extract", *sys.argv[1:]]))
