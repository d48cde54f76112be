"""The benchmark of issue 9: `python -m bench --help`."""
