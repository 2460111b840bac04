"""A load benchmark for Keyturn, run by hand: ``.venv/bin/python -m bench.run`` (see README.md)."""
