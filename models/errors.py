"""Exceptions raised by the model package; the CLI turns each into one line with a hint."""


class LinaError(Exception):
    """Base class of every error the model package raises on bad input."""


class InvalidConfigError(LinaError, ValueError):
    """A config.json (or a config dict) has unknown, missing or inconsistent keys."""


class UnknownArchError(InvalidConfigError):
    """An `arch` entry does not name a `vit_d{depth}w{width}` or `mlp_d{depth}w{width}` module."""


class CheckpointMismatchError(LinaError):
    """A weight file does not fit the architecture its config.json describes."""


class MissingComponentError(LinaError, FileNotFoundError):
    """A pipeline folder lacks a component (folder, config or weight file) the model needs."""


class ModelNotFoundError(LinaError, FileNotFoundError):
    """A model name is neither a local folder nor a repo id that can be resolved."""


class WeightsNotCachedError(ModelNotFoundError):
    """The requested repo is not in the local Hugging Face cache, and the hub cannot be asked (offline mode is on,
    or it cannot be reached)."""


class UnsupportedSizeError(LinaError, ValueError):
    """An image size was asked for that the checkpoint cannot produce."""


class InvalidClassLabelError(LinaError, ValueError):
    """A class id outside the checkpoint's label table."""


class InvalidPromptError(LinaError, ValueError):
    """An empty prompt list, or a prompt of the wrong kind for the model's task."""


class OutputError(LinaError):
    """An output path that cannot be used: not writable, ambiguous, or holding a different image."""


class PromptsFileError(InvalidPromptError):
    """A `--prompts-file` that is empty or cannot be parsed; the message names the file and line."""


class DeviceUnavailableError(LinaError):
    """The requested device (e.g. `--device cuda`) does not exist on this machine."""


class InvalidDeviceError(LinaError, ValueError):
    """A device name torch does not know (e.g. `--device tpu`)."""


class InvalidDtypeError(LinaError, ValueError):
    """A compute dtype lina does not run in (e.g. `dtype="float64"`)."""


class MetadataError(LinaError):
    """An image without readable `lina` metadata."""


class GenEvalFileError(LinaError, ValueError):
    """A GenEval metadata, prompts or results file (or folder) that cannot be read; the message names file and line."""


class MissingColourError(LinaError, ValueError):
    """A GenEval colour clause met a detection with no colour, and no colour classifier was given."""


class ShapesSceneError(LinaError, ValueError):
    """A shapes-dataset scene or option that cannot be drawn: unknown shape, colour or task, too many objects."""


class EvalInputError(LinaError, ValueError):
    """Images or statistics that cannot be scored: an empty folder, an unreadable or duplicated image, a wrong
    image size, or an `.npz` without the arrays the metric needs."""


class ReferenceUnavailableError(LinaError, FileNotFoundError):
    """A file FID needs (ADM's reference batch, the Inception weights) is not on disk and cannot be fetched."""


class InceptionWeightsError(LinaError):
    """Inception weights that are refused: a wrong SHA-256 for the standard file, objects other than tensors,
    or keys that do not fit torch-fidelity's InceptionV3."""


class DetectorConversionError(LinaError, ValueError):
    """An mmdetection Mask2Former state dict that does not convert into transformers' layout: a key left over,
    a tensor missing, or a shape that does not fit; the message names every offending key."""


class GenEvalWeightsError(LinaError):
    """Weights for GenEval's detector or colour classifier that are missing, unavailable, or refused (objects
    other than tensors in a .pth); the message names the file and how to get the right one."""


class TrainingConfigError(LinaError, ValueError):
    """A training option, preset or geometry that cannot be used, or one that contradicts the run being resumed."""


class TrainingDataError(LinaError, ValueError):
    """A `--data` folder or captions file that cannot be trained on: no images, unreadable lines, missing files."""


class RunFolderError(LinaError):
    """A training run folder that cannot be started (it already holds a run) or resumed (it holds none)."""
