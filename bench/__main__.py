"""`python -m bench`: the whole benchmark suite (see bench/run_all.py, bench/README.md)."""
from bench.run_all import main

raise SystemExit(main())
