"""Allow ``python -m qhybrid``."""

from qhybrid.cli import main

main()
