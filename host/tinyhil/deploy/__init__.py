"""Deployment: found models as C sources for a firmware project."""
