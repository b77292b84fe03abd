"""Test inputs for FID: random-init Inception weights in torch-fidelity's layout, and folders of distinct images.

The weights come from torch-fidelity's own `FeatureExtractorInceptionV3`: its constructor always loads a state
dict, so a subclass that skips that one call builds the network with fresh parameters. They are then redrawn
with He-normal convolutions, so activations neither vanish nor explode through the ~90 layers (PyTorch's
default init shrinks them by about 1e-8), and with a wide, zero-sum classifier, so the Inception Score differs
from 1: the pooled features are mostly positive and alike, and zero-sum rows cancel what all images share.
"""

import io
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch import nn

CLASSIFIER_STD = 200.0  # logits that vary across images by order 1


def write_random_inception_weights(path: Path, seed: int = 0) -> Path:
    """Save a randomly initialised state dict of torch-fidelity's InceptionV3 to `path` (torch.save, tensors only)."""
    from torch_fidelity.feature_extractor_inceptionv3 import FeatureExtractorInceptionV3

    class Unloaded(FeatureExtractorInceptionV3):
        def load_state_dict(self, state_dict, *args, **kwargs):
            return None  # keep the fresh parameters

    empty = io.BytesIO()
    torch.save({}, empty)
    empty.seek(0)
    model = Unloaded("inception-v3-compat", ["2048"], feature_extractor_weights_path=empty)
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, nn.Conv2d):
                fan_in = module.weight[0].numel()
                module.weight.copy_(torch.randn(module.weight.shape, generator=generator) * (2.0 / fan_in) ** 0.5)
        classifier = torch.randn(model.fc.weight.shape, generator=generator) * CLASSIFIER_STD / 2048**0.5
        model.fc.weight.copy_(classifier - classifier.mean(dim=1, keepdim=True))
        model.fc.bias.copy_(torch.randn(model.fc.bias.shape, generator=generator))
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save({name: tensor.clone() for name, tensor in model.state_dict().items()}, path)
    return path


def random_images(count: int, seed: int, size: int = 256) -> np.ndarray:
    """Distinct smooth images (count, size, size, 3) uint8: bilinear upsamplings of random 4x4 colour grids."""
    rng = np.random.default_rng(seed)
    images = []
    for _ in range(count):
        grid = Image.fromarray(rng.integers(0, 256, (4, 4, 3), dtype=np.uint8))
        images.append(np.asarray(grid.resize((size, size), resample=Image.BILINEAR)))
    return np.stack(images)


def write_images(folder: Path, images: np.ndarray, start: int = 0, suffix: str = ".png") -> list[Path]:
    """Write images as `{index:05d}{suffix}` files in `folder`."""
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for offset, image in enumerate(images):
        path = folder / f"{start + offset:05d}{suffix}"
        Image.fromarray(image).save(path)
        paths.append(path)
    return paths


def session_inception_weights(tmp_path_factory) -> Path:
    """One random-init weights file per test session, shared by every test module that asks for it."""
    path = tmp_path_factory.getbasetemp() / "inception-random-init.pth"
    if not path.is_file():
        write_random_inception_weights(path)
    return path
