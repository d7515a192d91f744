"""Helpers shared by the test folders, imported as a package (`from helpers.shared import shared_path`):
pyproject.toml puts tests/ on the import path."""
