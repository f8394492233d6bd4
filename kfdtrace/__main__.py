"""`python -m kfdtrace …` runs the kfdtrace command."""
import sys

from kfdtrace.cli import main

sys.exit(main())
