"""Train, track and register the challenger model (XGBoost, MLflow).

    python jobs/train.py --date 2026-03-01 [--use-case examples/churn]
"""

import sys

from precast.cli.main import main

if __name__ == "__main__":
    sys.exit(main(["run", "train", *sys.argv[1:]]))
