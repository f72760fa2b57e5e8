"""Build the inference feature dataset only (Spark SQL); what a predict DAG runs first.

    spark-submit jobs/inference_features.py --date 2026-03-01 [--use-case examples/churn]
"""

import sys

from precast.cli.main import main

if __name__ == "__main__":
    sys.exit(main(["run", "inference_features", *sys.argv[1:]]))
