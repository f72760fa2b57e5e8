"""`python -m bench [publish|score|lookup|all] [--quick]`: see bench/cli.py."""

from bench.cli import main

raise SystemExit(main())
