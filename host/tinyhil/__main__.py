"""`python -m tinyhil` is the `tinyhil` command."""
from tinyhil.cli import app

if __name__ == "__main__":
    app()
