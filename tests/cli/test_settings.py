"""Settings precedence: command line > LINA_<OPTION> > ./lina.toml > user config.toml > built-in default."""

import json

import pytest

from lina_cli.errors import SettingsError
from lina_cli.settings import SETTINGS, SOURCE_CLI, SOURCE_DEFAULT, resolve_settings
from tests.cli.conftest import image_records


def write_user_config(home, text):
    path = home / "config-home" / "lina" / "config.toml"
    path.parent.mkdir(parents=True)
    path.write_text(text)
    return path


def test_each_layer_overrides_the_ones_below(isolated):
    user = write_user_config(isolated, "ar_steps = 10\ndiffusion_steps = 11\ncfg = 3.0\nbatch_size = 4\n")
    (isolated / "lina.toml").write_text("ar-steps = 20\ndiffusion_steps = 21\ncfg = 5\n")
    environ = {"LINA_AR_STEPS": "30", "LINA_DIFFUSION_STEPS": "31", "XDG_CONFIG_HOME": str(isolated / "config-home")}
    resolved = resolve_settings({"ar_steps": 40}, environ=environ)
    assert (resolved["ar_steps"].value, resolved["ar_steps"].source) == (40, SOURCE_CLI)
    assert (resolved["diffusion_steps"].value, resolved["diffusion_steps"].source) == (31, "env LINA_DIFFUSION_STEPS")
    assert (resolved["cfg"].value, resolved["cfg"].source) == (5.0, str(isolated / "lina.toml"))
    assert (resolved["batch_size"].value, resolved["batch_size"].source) == (4, str(user))
    assert (resolved["dtype"].value, resolved["dtype"].source) == ("auto", SOURCE_DEFAULT)


def test_env_values_are_parsed_by_type():
    environ = {"LINA_OVERWRITE": "yes", "LINA_CFG": "2.5", "LINA_SEED": "7", "LINA_FORMAT": "json"}
    resolved = resolve_settings({}, environ=environ)
    assert resolved["overwrite"].value is True
    assert resolved["cfg"].value == 2.5
    assert resolved["seed"].value == 7
    assert resolved["format"].value == "json"


@pytest.mark.parametrize(
    "environ, fragment",
    [
        ({"LINA_AR_STEPS": "many"}, "LINA_AR_STEPS='many': expected int"),
        ({"LINA_AR_STEPS": "0"}, "must be ≥ 1"),
        ({"LINA_DTYPE": "fp8"}, "expected one of auto, bf16, fp16, fp32"),
        ({"LINA_OVERWRITE": "maybe"}, "expected 1/0"),
    ],
)
def test_bad_env_values_name_the_variable(environ, fragment):
    with pytest.raises(SettingsError, match=fragment.replace("(", r"\(")):
        resolve_settings({}, environ=environ)


def test_config_file_errors_name_the_file_and_keys(isolated):
    (isolated / "lina.toml").write_text("ar_stepz = 3\n")
    with pytest.raises(SettingsError, match=r"lina.toml: unknown keys \['ar_stepz'\]"):
        resolve_settings({})
    (isolated / "lina.toml").write_text("ar_steps = 'three'\n")
    with pytest.raises(SettingsError, match="expected int"):
        resolve_settings({})
    (isolated / "lina.toml").write_text("ar_steps = \n")
    with pytest.raises(SettingsError, match="not valid TOML"):
        resolve_settings({})


def test_every_setting_has_an_env_var_and_option():
    for name, setting in SETTINGS.items():
        assert setting.env_var == "LINA_" + name.upper()
        assert setting.option == "--" + name.replace("_", "-")


def test_lina_config_shows_values_and_sources(lina, isolated):
    write_user_config(isolated, "batch_size = 8\n")
    (isolated / "lina.toml").write_text('model = "lina-c2i-256"\n')
    result = lina("config", "--format", "json", env={"LINA_SEED": "9"})
    assert result.exit_code == 0, result.output
    rows = {row["name"]: row for row in map(json.loads, result.stdout.splitlines())}
    assert rows["seed"]["value"] == 9 and rows["seed"]["source"] == "env LINA_SEED"
    assert rows["model"]["value"] == "lina-c2i-256" and rows["model"]["source"].endswith("lina.toml")
    assert rows["batch_size"]["value"] == 8 and rows["batch_size"]["source"].endswith("config.toml")
    assert rows["format"]["source"] == SOURCE_CLI
    human = lina("config")
    assert "LINA_SEED" in human.stdout and "found:" in human.stdout


def test_generate_reads_defaults_from_the_project_file(lina, isolated, tiny_c2i_folder):
    """The project file's settings reach `lina generate`: here its output template and sampler steps."""
    (isolated / "lina.toml").write_text(
        f'model = "{tiny_c2i_folder}"\noutput = "cfg/{{seed}}.png"\nar_steps = 3\ndiffusion_steps = 2\ndevice = "cpu"\n'
    )
    result = lina("generate", "--class", "1", "-s", "4", "--format", "json", env={"LINA_DIFFUSION_STEPS": "3"})
    assert result.exit_code == 0, result.output
    [record] = image_records(result.stdout)
    assert record["path"] == "cfg/4.png"
    assert (record["ar_steps"], record["diffusion_steps"]) == (3, 3)  # file, then env over file
