"""Optional `torch.compile` of a model's repeated blocks for training (`lina train model --compile`).

A small model's training step is bound by its elementwise operations and their dispatch, not by its matrix
products (docs/training.md, "Why the step is slow"). Compiling each transformer block and each diffusion-head
block fuses those of the blocks (on the demo model it gained 9 %), and keeps the compiled graphs small: blocks of one kind share one graph
(parameters are graph inputs), the only shape that changes between steps, the encoder half's number of known
tokens, becomes a dynamic dimension after its first change, and the loss, the embeddings and the optimiser stay
eager. `nn.Module.compile` leaves parameter names and state dicts unchanged, so checkpoints and exports are the
same files as without it.
"""

from torch import nn

from models.network.diffusion_head import DiffusionBlock
from models.network.transformer import Block

COMPILED_BLOCKS = (Block, DiffusionBlock)


def compile_blocks_(model: nn.Module) -> None:
    """Compile every transformer and diffusion-head block of `model` in place."""
    for module in model.modules():
        if isinstance(module, COMPILED_BLOCKS):
            module.compile()
