"""`python -m tinyhil` is the `tinyhil` command."""
from .cli import app

if __name__ == "__main__":
    app()
