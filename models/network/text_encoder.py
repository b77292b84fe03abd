"""Phi-2 prompt features for the text-to-image models (docs/architecture.md, "Conditioning and context"), on top of `transformers.PhiModel`.

The official `text_encoder/` folder holds a `PhiConfig` config.json (whose `architectures`/`auto_map` name the
authors' remote `PhiEncoderModel` code, which we never import) and `PhiForCausalLM` weights (`model.*` + `lm_head`,
possibly sharded, `.safetensors` or `.bin`); `tokenizer/` holds `CodeGenTokenizerFast` files. LINA only uses the
decoder body's `last_hidden_state`, so the model is a `PhiModel` and the `lm_head` is dropped on load.
"""

import contextlib
import itertools
import os
import tempfile
from pathlib import Path

import torch
from safetensors.torch import save_file
from torch import nn
from transformers import CodeGenTokenizerFast, PhiConfig, PhiModel
from transformers.utils import SAFE_WEIGHTS_INDEX_NAME, SAFE_WEIGHTS_NAME, WEIGHTS_INDEX_NAME, WEIGHTS_NAME

from models.constants import CONFIG_NAME
from models.errors import CheckpointMismatchError, InvalidConfigError, InvalidPromptError, MissingComponentError
from models.files import preview_names, read_json, write_atomic, write_json_atomic

# transformers' weight file names, in the order `from_pretrained` looks for them.
TEXT_ENCODER_WEIGHT_NAMES = (SAFE_WEIGHTS_NAME, SAFE_WEIGHTS_INDEX_NAME, WEIGHTS_NAME, WEIGHTS_INDEX_NAME)
# A tokenizer folder is usable with the `tokenizers` serialization, or with the byte-level BPE vocab + merges.
TOKENIZER_FILE_NAME = "tokenizer.json"
BPE_FILE_NAMES = ("vocab.json", "merges.txt")
# config.json keys that point at the authors' remote code; dropped so nothing downstream can follow them.
REMOTE_CODE_KEYS = ("architectures", "auto_map")
# Class name written to config.json: the weights we write are laid out as a `PhiForCausalLM` checkpoint.
CHECKPOINT_ARCHITECTURE = "PhiForCausalLM"
# Any valid token id works as padding: padded positions sit to the right and are never read back.
PAD_TOKEN_ID = 0


class _PhiBody(PhiModel):
    """`PhiModel` loaded from a `PhiForCausalLM` checkpoint: the unused `lm_head` is expected and dropped."""

    _keys_to_ignore_on_load_unexpected = [r"^lm_head\."]


class PhiTextEncoder:
    """Tokenizer + Phi decoder body that turns prompts into per-token features [n_tokens, hidden_size].

    Args:
        model: the Phi decoder body (its output is taken after `final_layernorm`).
        tokenizer: the matching `CodeGenTokenizerFast`.
        device: where prompts are encoded and features returned; None: where the weights are.
        offload: the weights rest where they are (the CPU) and each `encode` streams them to `device` a layer at
            a time (`LayerStream`), so the text encoder holds at most one layer on `device` while it encodes and
            nothing while images are sampled (Phi-2 is 5 GiB in bf16, more than the 1024-px transformer).
    """

    def __init__(
        self,
        model: PhiModel,
        tokenizer: CodeGenTokenizerFast,
        *,
        device: torch.device | str | None = None,
        offload: bool = False,
    ) -> None:
        self.model = model.eval().requires_grad_(False)
        self.tokenizer = tokenizer
        self.device = self.weights_device if device is None else torch.device(device)
        self.offload = offload

    @property
    def hidden_size(self) -> int:
        """Width of one feature row (2560 for Phi-2)."""
        return self.model.config.hidden_size

    @property
    def weights_device(self) -> torch.device:
        return self.model.embed_tokens.weight.device

    @property
    def dtype(self) -> torch.dtype:
        return self.model.embed_tokens.weight.dtype

    # ----------------------------------------------------------------------------------- loading ----

    @classmethod
    def from_pretrained(
        cls,
        text_encoder_folder: str | os.PathLike,
        tokenizer_folder: str | os.PathLike,
        *,
        device: torch.device | str = "cpu",
        dtype: torch.dtype = torch.float32,
        offload: bool = False,
    ) -> "PhiTextEncoder":
        """Load the Phi body and its tokenizer from the two folders of a pipeline; no remote code is run.

        Args:
            text_encoder_folder: `config.json` + `PhiForCausalLM` (or `PhiModel`) weights, single or sharded.
            tokenizer_folder: `tokenizer.json`, or `vocab.json` + `merges.txt`.
            device, dtype: where prompts are encoded, and the weights' dtype.
            offload: keep the weights on the CPU and stream them to `device` a layer at a time in each `encode`.

        Raises:
            MissingComponentError: a folder, the config, the weights or the tokenizer files are missing.
            InvalidConfigError: config.json is not a Phi config.
            CheckpointMismatchError: the weights do not fit the config.
        """
        text_encoder_folder, tokenizer_folder = Path(text_encoder_folder), Path(tokenizer_folder)
        config = _read_phi_config(text_encoder_folder)
        _require_any(text_encoder_folder, TEXT_ENCODER_WEIGHT_NAMES, "text encoder weights")
        try:
            model, info = _PhiBody.from_pretrained(
                text_encoder_folder,
                config=config,
                dtype=dtype,
                attn_implementation="sdpa",
                weights_only=True,  # a `.bin` is only ever read as plain tensors
                local_files_only=True,
                output_loading_info=True,
            )
        except OSError as error:  # e.g. a shard named by the index is absent
            raise MissingComponentError(
                f"could not read the text encoder weights in {text_encoder_folder}: {error}"
            ) from error
        except RuntimeError as error:  # transformers reports shape mismatches this way
            raise CheckpointMismatchError(f"{text_encoder_folder} does not fit its config.json: {error}") from error
        problems = [
            f"{len(info[kind])} {kind.replace('_', ' ')} {preview_names(sorted(info[kind]))}"
            for kind in ("missing_keys", "unexpected_keys")
            if info[kind]
        ]
        if problems:
            raise CheckpointMismatchError(
                f"{text_encoder_folder} does not fit its config.json ({config.num_hidden_layers} layers, hidden "
                f"{config.hidden_size}): {'; '.join(problems)}"
            )
        home = "cpu" if offload else device
        return cls(model.to(home), _load_tokenizer(tokenizer_folder), device=device, offload=offload)

    # ---------------------------------------------------------------------------------- encoding ----

    @torch.no_grad()
    def encode(self, prompts: list[str], max_tokens: int) -> list[torch.Tensor]:
        """Phi-2 features of each prompt: the `last_hidden_state` rows of its tokens (docs/architecture.md, "Conditioning and context").

        Prompts are tokenized without BOS/EOS and truncated to `max_tokens`. The reference pads every prompt
        to `max_tokens`; Phi's attention is causal, so the rows of the real tokens never see the padding and
        encoding without it gives the same rows. For the same reason the prompts are batched with right
        padding and no attention mask: row j of a prompt only attends to positions <= j, all real tokens.

        Args:
            prompts: B strings; "" gives no rows.
            max_tokens: the most tokens kept per prompt (the checkpoint's `text_token_len`).

        Returns:
            B tensors [n_i, hidden_size], n_i <= max_tokens, in the model's dtype and on its device.
        """
        if max_tokens < 0:
            raise InvalidConfigError(f"max_tokens must be >= 0, got {max_tokens}")
        not_text = [prompt for prompt in prompts if not isinstance(prompt, str)]
        if not_text:
            raise InvalidPromptError(f"prompts must be strings, got {not_text[:3]}")
        if not prompts:  # the tokenizer cannot batch zero texts
            return []
        tokens = self.tokenizer(prompts, add_special_tokens=False, truncation=True, max_length=max_tokens)
        token_ids = tokens["input_ids"]
        features = [torch.empty(0, self.hidden_size, dtype=self.dtype, device=self.device) for _ in prompts]
        encoded = [i for i, ids in enumerate(token_ids) if ids]
        if not encoded:
            return features
        longest = max(len(token_ids[i]) for i in encoded)
        batch = torch.full((len(encoded), longest), PAD_TOKEN_ID, dtype=torch.long)  # [b, L]
        for row, i in enumerate(encoded):
            batch[row, : len(token_ids[i])] = torch.tensor(token_ids[i])
        hidden = self._last_hidden_state(batch.to(self.device))  # [b, L, hidden]
        for row, i in enumerate(encoded):
            features[i] = hidden[row, : len(token_ids[i])]  # [n_i, hidden]
        return features

    def _last_hidden_state(self, input_ids: torch.Tensor) -> torch.Tensor:
        with LayerStream(self.model, self.device) if self.offload else contextlib.nullcontext():
            return self.model(input_ids=input_ids, use_cache=False).last_hidden_state

    # ----------------------------------------------------------------------------------- saving ----

    def save_pretrained(self, text_encoder_folder: str | os.PathLike, tokenizer_folder: str | os.PathLike) -> None:
        """Write the two folders in the official layout, so `from_pretrained` (ours or transformers') reads them.

        The weights are a `PhiForCausalLM` checkpoint (`model.*` keys + `lm_head`) in one `model.safetensors`.
        LINA never uses the language-model head and `from_pretrained` drops it, so it is written as zeros
        (a [vocab, hidden] weight and a [vocab] bias) only to keep the official key layout.
        """
        text_encoder_folder, tokenizer_folder = Path(text_encoder_folder), Path(tokenizer_folder)
        config = self.model.config.to_dict()
        for key in REMOTE_CODE_KEYS:
            config.pop(key, None)
        write_json_atomic(text_encoder_folder / CONFIG_NAME, {**config, "architectures": [CHECKPOINT_ARCHITECTURE]})

        body = self.model.state_dict()
        state = {f"model.{name}": tensor.detach().contiguous().cpu() for name, tensor in body.items()}
        vocab_size = self.model.config.vocab_size
        state["lm_head.weight"] = torch.zeros(vocab_size, self.hidden_size, dtype=self.dtype)
        state["lm_head.bias"] = torch.zeros(vocab_size, dtype=self.dtype)
        write_atomic(
            text_encoder_folder / SAFE_WEIGHTS_NAME, lambda tmp: save_file(state, str(tmp), metadata={"format": "pt"})
        )
        _save_tokenizer(self.tokenizer, tokenizer_folder)


class LayerStream:
    """While active, each part of a model that rests in CPU memory is copied to `device` just before it runs and
    dropped just after: the model's direct children, each member of a `ModuleList` (a Phi-2 decoder layer, 150 MB in
    bf16) on its own. So the device never holds more than one part's weights, and none once the model returns.
    """

    def __init__(self, model: nn.Module, device: torch.device):
        self.parts = [
            part for child in model.children() for part in (child if isinstance(child, nn.ModuleList) else [child])
        ]
        self.device = device
        self.hooks: list[torch.utils.hooks.RemovableHandle] = []
        self.resting: dict[nn.Module, list[tuple[nn.Module, str, torch.Tensor]]] = {}  # part → its CPU tensors

    def __enter__(self) -> "LayerStream":
        for part in self.parts:
            self.hooks.append(part.register_forward_pre_hook(self._arrive))
            self.hooks.append(part.register_forward_hook(self._leave))
        return self

    def __exit__(self, *exc_info) -> None:
        for hook in self.hooks:
            hook.remove()
        for part in list(self.resting):  # a forward that raised left these on the device
            self._leave(part, (), None)

    def _arrive(self, part: nn.Module, args: tuple) -> None:
        resting = []
        for module in part.modules():
            for name, tensor in itertools.chain(module._parameters.items(), module._buffers.items()):
                if tensor is None:
                    continue
                resting.append((module, name, tensor.data))
                if name in module._parameters:
                    tensor.data = tensor.data.to(self.device, non_blocking=True)
                else:
                    module._buffers[name] = tensor.to(self.device, non_blocking=True)
        self.resting[part] = resting

    def _leave(self, part: nn.Module, args: tuple, output: object) -> None:
        for module, name, tensor in self.resting.pop(part, []):
            if name in module._parameters:
                module._parameters[name].data = tensor
            else:
                module._buffers[name] = tensor


# ---------------------------------------------------------------------------------------------------
# Folder helpers
# ---------------------------------------------------------------------------------------------------


def _read_phi_config(folder: Path) -> PhiConfig:
    """Build a `PhiConfig` from config.json, ignoring the keys that name remote code."""
    if not folder.is_dir():
        raise MissingComponentError(
            f"text encoder folder {folder} does not exist; a text-to-image model needs text_encoder/"
        )
    data = read_json(folder / CONFIG_NAME, "text_encoder")
    model_type = data.get("model_type", "phi")
    if model_type != "phi":
        raise InvalidConfigError(
            f"{folder / CONFIG_NAME} has model_type {model_type!r}; LINA's text encoder is Phi ('phi')"
        )
    for key in REMOTE_CODE_KEYS:
        data.pop(key, None)
    try:
        return PhiConfig.from_dict(data)
    except (TypeError, ValueError) as error:
        raise InvalidConfigError(f"{folder / CONFIG_NAME} is not a valid PhiConfig: {error}") from error


def _require_any(folder: Path, names: tuple[str, ...], what: str) -> None:
    if not any((folder / name).is_file() for name in names):
        raise MissingComponentError(f"{folder} has no {what}: expected one of {', '.join(names)}")


def _load_tokenizer(folder: Path) -> CodeGenTokenizerFast:
    """Load the CodeGen tokenizer directly by class, so no `tokenizer_class`/`auto_map` entry is followed."""
    if not folder.is_dir():
        raise MissingComponentError(f"tokenizer folder {folder} does not exist; a text-to-image model needs tokenizer/")
    if not (folder / TOKENIZER_FILE_NAME).is_file() and not all((folder / name).is_file() for name in BPE_FILE_NAMES):
        raise MissingComponentError(
            f"{folder} has no tokenizer files: expected {TOKENIZER_FILE_NAME}, or {' and '.join(BPE_FILE_NAMES)}"
        )
    return CodeGenTokenizerFast.from_pretrained(folder, local_files_only=True)


def _save_tokenizer(tokenizer: CodeGenTokenizerFast, folder: Path) -> None:
    """Save the tokenizer files next to their final place, then move each one in with an atomic rename."""
    folder.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=folder.parent, prefix=f".{folder.name}.") as staging:
        tokenizer.save_pretrained(staging)
        for path in Path(staging).iterdir():
            os.replace(path, folder / path.name)
