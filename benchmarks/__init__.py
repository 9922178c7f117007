"""Speed and scale benchmarks: `python benchmarks/run.py [--quick] --json OUT.json`."""
