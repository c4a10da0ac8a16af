"""``python -m reasonlab.cli`` runs the ``reasonlab`` command."""

from reasonlab.cli import main

main()
