"""``python -m axion`` runs the command-line interface."""

from axion.cli import main

main()
