"""Validate a dataset against its Great Expectations suite (see --dataset).

    python jobs/validate.py --dataset features --date 2026-03-01 [--use-case examples/churn]
    spark-submit jobs/validate.py --dataset events --date 2026-03-01   # events are read by Spark
"""

import sys

from precast.cli.main import main

if __name__ == "__main__":
    sys.exit(main(["run", "validate", *sys.argv[1:]]))
