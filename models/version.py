"""The package version: recorded in every image's metadata and shown by `lina --version`."""

__version__ = "0.1.0"
