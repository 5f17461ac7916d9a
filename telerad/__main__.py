"""``python -m telerad`` runs the command line."""

from telerad.cli import main

main()
