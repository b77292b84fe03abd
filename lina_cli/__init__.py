"""The `lina` command line: download LINA checkpoints, generate images, inspect their metadata.

Importing this package (or `lina_cli.app`) never imports torch or transformers, so `lina --help` is fast;
commands import the model package inside their bodies.
"""

import time

from models.version import __version__

# When lina's own code began to run (the interpreter's start-up comes before): a run's report counts its imports
# from here (`lina_cli.image_run.RunTimings`).
STARTED = time.perf_counter()

__all__ = ["STARTED", "__version__"]
