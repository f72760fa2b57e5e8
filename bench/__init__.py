"""precast's benchmarks: each prints ratios against baselines measured in the same run.

Run them with `make bench`, `python -m bench [publish|score|lookup|all] [--quick]` or
`python bench/run.py ...`. Not part of the test suite.
"""
