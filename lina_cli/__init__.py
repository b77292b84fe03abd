"""The `lina` command line: download LINA checkpoints, generate images, inspect their metadata.

Importing this package (or `lina_cli.app`) never imports torch or transformers, so `lina --help` is fast;
commands import the model package inside their bodies.
"""

from models.version import __version__

__all__ = ["__version__"]
