"""``python -m rightsledger`` runs the command line."""

from rightsledger.cli import main

main()
