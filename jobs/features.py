"""Build the train, test and inference feature datasets (Spark SQL).

    spark-submit jobs/features.py --date 2026-03-01 [--use-case examples/churn]
"""

import sys

from precast.cli.main import main

if __name__ == "__main__":
    sys.exit(main(["run", "features", *sys.argv[1:]]))
