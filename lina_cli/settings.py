"""Defaults of every configurable option, and where each value comes from.

Precedence, highest first: the command line, an environment variable `LINA_<OPTION>`, `./lina.toml` (the
project file), `$XDG_CONFIG_HOME/lina/config.toml` (the user file, `~/.config/lina/config.toml` by default),
then the built-in default below. Both files are flat TOML tables whose keys are option names
(`ar_steps = 64` or `ar-steps = 64`). `SETTINGS` is the one table of defaults: the commands read their
defaults from it, and `lina config` prints it resolved.
"""

import math
import os
import sys
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lina_cli.errors import SettingsError
from models.constants import DEFAULT_MODEL, DTYPE_CHOICES, KERNEL_CHOICES

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - exercised on Python 3.10 only
    import tomli as tomllib

ENV_PREFIX = "LINA_"
PROJECT_FILE = "lina.toml"
USER_FILE = Path("lina") / "config.toml"
FORMAT_CHOICES = ("human", "json", "quiet")
_TRUE, _FALSE = {"1", "true", "yes", "on"}, {"0", "false", "no", "off", ""}

SOURCE_CLI = "command line"
SOURCE_DEFAULT = "default"


@dataclass(frozen=True)
class Setting:
    """One configurable option: its type, built-in default and allowed values."""

    name: str
    kind: type
    default: Any
    help: str
    minimum: int | None = None
    choices: tuple[str, ...] | None = None

    @property
    def env_var(self) -> str:
        return ENV_PREFIX + self.name.upper()

    @property
    def option(self) -> str:
        return "--" + self.name.replace("_", "-")

    def problem(self, value: Any) -> str | None:
        """What is wrong with a value of the right Python type (`must be ≥ 1`, …), or None."""
        if self.kind is float and not math.isfinite(value):
            return "must be a finite number"
        if self.minimum is not None and value < self.minimum:
            return f"must be ≥ {self.minimum}"
        if self.choices is not None and value not in self.choices:
            return f"expected one of {', '.join(self.choices)}"
        return None

    def check(self, value: Any, origin: str) -> Any:
        """Validate a value of the right Python type; `origin` names where it came from, for the message."""
        if value is None:
            return None
        if self.kind is float and isinstance(value, int) and not isinstance(value, bool):
            value = float(value)
        if not isinstance(value, self.kind) or (self.kind is int and isinstance(value, bool)):
            raise SettingsError(f"{self.name} = {value!r} in {origin}: expected {self.kind.__name__}")
        problem = self.problem(value)
        if problem is not None:
            raise SettingsError(f"{self.name} = {value!r} in {origin}: {problem}")
        return value

    def parse(self, text: str, origin: str) -> Any:
        """Turn the text of an environment variable into a checked value."""
        text = text.strip()
        if self.kind is bool:
            if text.lower() not in _TRUE | _FALSE:
                raise SettingsError(f"{origin}={text!r}: expected 1/0, true/false, yes/no or on/off")
            return text.lower() in _TRUE
        if self.kind in (int, float):
            try:
                number = self.kind(text)
            except ValueError:
                raise SettingsError(f"{origin}={text!r}: expected {self.kind.__name__}") from None
            return self.check(number, origin)
        return self.check(text, origin)


SETTINGS: dict[str, Setting] = {
    setting.name: setting
    for setting in (
        Setting("model", str, DEFAULT_MODEL, "alias, hub repo id or folder (--size/--class pick one when unset)"),
        Setting("revision", str, None, "hub branch, tag or commit (default: main)"),
        Setting("num_images", int, 1, "images per prompt or class", minimum=1),
        Setting("seed", int, None, "base seed; image i uses seed + i (default: random, printed)", minimum=0),
        Setting("cfg", float, None, "guidance scale (model default: t2i 7, c2i 2.4)"),
        Setting("cfg_min", float, None, "guidance at the first AR step, ramping linearly to --cfg (default: constant --cfg)"),
        Setting("ar_steps", int, None, "autoregressive steps (model default: t2i 128, c2i 64)", minimum=1),
        Setting("diffusion_steps", int, None, "flow-matching steps per AR step (model default: 25)", minimum=1),
        Setting("negative_prompt", str, None, "negative prompt (text-to-image only)"),
        Setting("size", int, None, "image side in pixels; checked against the checkpoint", minimum=1),
        Setting("dtype", str, "auto", "compute dtype (auto: bf16 on CUDA, fp32 on CPU)", choices=DTYPE_CHOICES),
        Setting("device", str, None, "cpu, cuda or cuda:N (default: cuda if available, else cpu)"),
        Setting("kernels", str, "auto", "model ops: fused Triton kernels (CUDA; same images up to bf16 rounding, "
                "about twice as fast) or the plain-PyTorch reference (bit-identical to the authors' code); auto: "
                "fused on CUDA GPUs from Ampere on, reference elsewhere", choices=KERNEL_CHOICES),
        Setting("batch_size", int, 1, "images sampled together (lower it on out-of-memory)", minimum=1),
        Setting("output", str, "outputs", "folder, .png file name (one image), or template with {index}, {seed}, {prompt_slug}, {class}"),
        Setting("overwrite", bool, False, "replace existing files instead of skipping them"),
        Setting("save_latents", bool, False, "also write each image's latents before decoding"),
        Setting("offline", bool, False, "never contact the hub; use the local cache only"),
        Setting("format", str, "human", "output style", choices=FORMAT_CHOICES),
        Setting("cache_dir", str, None, "Hugging Face cache used by download, models and generate (default: HF_HUB_CACHE / HF_HOME)"),
    )
}


@dataclass(frozen=True)
class Resolved:
    """A setting's value and where it came from (`command line`, `env LINA_X`, a file path, `default`)."""

    value: Any
    source: str

    @property
    def is_default(self) -> bool:
        return self.source == SOURCE_DEFAULT


def config_files(environ: Mapping[str, str] | None = None, cwd: Path | None = None) -> list[Path]:
    """The project file then the user file, highest precedence first (whether or not they exist)."""
    environ = os.environ if environ is None else environ
    config_home = environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return [(cwd or Path.cwd()) / PROJECT_FILE, Path(config_home).expanduser() / USER_FILE]


def read_config_file(path: Path) -> dict[str, Any]:
    """Read one TOML file into {setting name: checked value}; unknown keys are an error naming them."""
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as error:
        raise SettingsError(f"{path} is not valid TOML: {error}") from error
    values = {}
    unknown = []
    for key, value in data.items():
        name = key.replace("-", "_")
        if name not in SETTINGS:
            unknown.append(key)
            continue
        values[name] = SETTINGS[name].check(value, str(path))
    if unknown:
        raise SettingsError(f"{path}: unknown keys {sorted(unknown)}; known keys are {sorted(SETTINGS)}")
    return values


def resolve_settings(
    cli: Mapping[str, Any],
    names: Iterable[str] | None = None,
    *,
    environ: Mapping[str, str] | None = None,
    cwd: Path | None = None,
) -> dict[str, Resolved]:
    """Resolve settings by precedence: command line > LINA_<OPTION> > ./lina.toml > user file > default.

    Args:
        cli: values from the command line; None means "not given".
        names: which settings to resolve (default: all).
        environ, cwd: the environment and working directory (default: the process's).

    Returns:
        {name: Resolved(value, source)}.
    """
    environ = os.environ if environ is None else environ
    files = [(path, read_config_file(path)) for path in config_files(environ, cwd) if path.is_file()]
    resolved = {}
    for name in names or SETTINGS:
        setting = SETTINGS[name]
        if cli.get(name) is not None:
            resolved[name] = Resolved(setting.check(cli[name], SOURCE_CLI), SOURCE_CLI)
        elif setting.env_var in environ:
            origin = f"env {setting.env_var}"
            resolved[name] = Resolved(setting.parse(environ[setting.env_var], setting.env_var), origin)
        else:
            from_file = next(((str(path), values[name]) for path, values in files if name in values), None)
            resolved[name] = Resolved(from_file[1], from_file[0]) if from_file else Resolved(setting.default, SOURCE_DEFAULT)
    return resolved
