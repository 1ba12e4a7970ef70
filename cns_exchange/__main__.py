"""``python -m cns_exchange`` runs the ``cnsx`` command."""

from cns_exchange.cli import main

if __name__ == "__main__":
    main()
