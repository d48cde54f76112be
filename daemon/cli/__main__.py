"""`python -m daemon.cli`, as tests and the demo run it: the same `main` as the `intake` script.

Python imports the package daemon.cli first and runs only this file as __main__, so every module sees one
CliError class (when cli was a single module run as __main__, it had a second copy of itself)."""

import sys

from daemon.cli import main

sys.exit(main())
