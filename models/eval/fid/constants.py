"""The FID protocol's defaults in one table, ADM's reference batches and where lina caches them.

Both `lina eval fid` and `models.eval.fid.score.score_fid` read these, so the CLI's help and the library agree.
Nothing here imports numpy or torch.
"""

import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

# ----------------------------------------------------------------------------------------------------
# The protocol
# ----------------------------------------------------------------------------------------------------

FID_50K = 50_000  # ADM's and the paper's sample count: 1000 classes x 50 images
IMAGE_SIZE = 256  # the c2i model's output and ADM's 256 reference; `imagenet-512` uses its own size
FEATURE_BATCH_SIZE = 64  # ADM's evaluator batch; features do not depend on it beyond float rounding
IS_SPLITS = 10  # Inception Score splits, as torch-fidelity and ADM (50 000 / 5 000) use
SHUFFLE_SEED = 2020  # torch-fidelity's `rng_seed`: the IS shuffle and the KID subsets
PR_NEIGHBOURHOOD = 3  # k of ADM's precision/recall manifolds (Kynkäänniemi et al. 2019)
KID_SUBSETS = 100  # torch-fidelity's defaults for KID
KID_SUBSET_SIZE = 1000
KID_DEGREE = 3  # polynomial kernel (x·y / d + 1)^3 (Binkowski et al. 2018)
KID_COEF0 = 1.0
MIN_SAMPLES = IS_SPLITS  # every Inception Score split needs an image
MIN_REFERENCE_IMAGES = PR_NEIGHBOURHOOD + 1  # a k-th neighbour other than the image itself
RESIZE_RULE = (  # how --resize brings other sizes to the protocol's, as ADM prepared its reference images
    "ADM's center_crop_arr with PIL: halve with a box filter while the short side is at least twice the target, "
    "bicubic resize of the short side to the target, centre crop"
)

# ----------------------------------------------------------------------------------------------------
# The feature extractor (torch-fidelity's port of the TF Inception graph ADM uses)
# ----------------------------------------------------------------------------------------------------

INCEPTION_NAME = "inception-v3-compat"
POOL_FEATURES = "2048"  # pool_3, for FID, precision/recall and KID
LOGIT_FEATURES = "logits_unbiased"  # what torch-fidelity's Inception Score reads
# The standard weights file that torch-fidelity downloads (same bytes as pytorch-fid's pt_inception file).
INCEPTION_WEIGHTS_SHA256 = "6726825d0af5f729cebd5821db510b11b1cfad8faad88a03f1befd49fb9129b2"
INCEPTION_WEIGHTS_NAMES = ("weights-inception-2015-12-05-6726825d.pth", "pt_inception-2015-12-05-6726825d.pth")

SFID_REASON = (
    "not computed: torch-fidelity's InceptionV3 returns pooled features (64, 192, 768, 2048) and logits only, "
    "not the spatial mixed_6/conv activations ADM's sFID uses"
)

# ----------------------------------------------------------------------------------------------------
# ADM's reference batches (guided-diffusion's evaluations/README.md)
# ----------------------------------------------------------------------------------------------------

ADM_REFERENCE_URL = "https://openaipublic.blob.core.windows.net/diffusion/jul-2021/ref_batches/imagenet"


@dataclass(frozen=True)
class BuiltinReference:
    """A reference batch lina can fetch by name. `sha256` is None where no published hash was found."""

    name: str
    file_name: str
    url: str
    sha256: str | None
    image_size: int
    description: str


BUILTIN_REFERENCES = {
    "imagenet": BuiltinReference(
        "imagenet", "VIRTUAL_imagenet256_labeled.npz", f"{ADM_REFERENCE_URL}/256/VIRTUAL_imagenet256_labeled.npz",
        None, 256, "ADM's ImageNet 256x256 batch: mu/sigma of the training set, 10 000 images for precision/recall",
    ),
    "imagenet-512": BuiltinReference(
        "imagenet-512", "VIRTUAL_imagenet512.npz", f"{ADM_REFERENCE_URL}/512/VIRTUAL_imagenet512.npz",
        None, 512, "ADM's ImageNet 512x512 batch: mu/sigma of the training set; the published file holds 1 000 images",
    ),
}
DEFAULT_REFERENCE = "imagenet"

# ----------------------------------------------------------------------------------------------------
# The lina cache
# ----------------------------------------------------------------------------------------------------

LINA_CACHE_ENV = "LINA_CACHE"
REFERENCE_FOLDER = "fid-references"
FEATURES_FOLDER = "fid-features"


def lina_cache_dir() -> Path:
    """`$LINA_CACHE`, else `$XDG_CACHE_HOME/lina`, else `~/.cache/lina` (read at call time, so tests can set it)."""
    explicit = os.environ.get(LINA_CACHE_ENV)
    if explicit:
        return Path(explicit).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base).expanduser() / "lina"


# What the library reports while it works: (task, done, total or None). The CLI draws progress bars from it.
ProgressCallback = Callable[[str, int, int | None], None]
