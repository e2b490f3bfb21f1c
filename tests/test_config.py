"""Configs: defaults, TOML files that carry only differences, overrides, and errors that name the key."""

from __future__ import annotations

import pytest

from configs.settings import CONFIG_DIR, Config, ConfigError, config_to_toml, load_config


def test_defaults_then_file_then_overrides(tmp_path):
    path = tmp_path / "site.toml"
    path.write_text('[capture]\nfps = 10\ncrop = 112\n[endpoints]\nlabels = "tcp://127.0.0.1:6000"\n')
    config = load_config(path, ["capture.fps=12.5", "features.max_batch=4", "lstm.bundle=other.pt"])
    assert config.capture.fps == 12.5 and config.capture.crop == 112
    assert config.endpoints.labels == "tcp://127.0.0.1:6000"
    assert config.features.max_batch == 4 and config.lstm.bundle == "other.pt"
    assert config.capture.resize == Config().capture.resize  # untouched values keep their defaults


def test_integer_given_for_a_float_is_accepted():
    assert load_config(None, ["capture.fps=7"]).capture.fps == 7.0


@pytest.mark.parametrize("overrides, named", [
    (["capture.fsp=10"], "capture.fsp"),
    (["camera.fps=10"], "[camera]"),
    (["capture.fps=fast"], "capture.fps"),
    (["features.max_batch=2.5"], "features.max_batch"),
    (["capture.loop=1"], "capture.loop"),
    (["security.curve=yes"], "security.curve"),
    (["capture.fps"], "section.key=value"),
])
def test_bad_keys_and_types_are_named(overrides, named):
    with pytest.raises(ConfigError) as error:
        load_config(None, overrides)
    assert named in str(error.value)


@pytest.mark.parametrize("override, allowed", [
    ("features.backend=typo", '"auto", "torch", "openvino"'),
    ("features.device=tpu", '"auto", "cpu", "cuda"'),
    ("features.precision=half", '"auto", "fp32", "reduced"'),
    ("sequence.inputs=deltas", '"features", "differences"'),
    ("cnn.weights=pretrained", '"imagenet", "none"'),
    ("data.split=4", "1, 2, 3"),
    ("data.split=true", "1, 2, 3"),  # True == 1 in Python, but it is not the split 1
    ("data.split='1'", "1, 2, 3"),
])
def test_a_value_outside_its_choices_names_the_key_and_the_allowed_values(override, allowed):
    key = override.partition("=")[0]
    with pytest.raises(ConfigError) as error:
        load_config(None, [override])
    assert f"{key} must be one of {allowed}" in str(error.value)


def test_every_choice_is_accepted():
    config = load_config(None, ["features.backend=openvino", "features.device=cpu", "features.precision=fp32",
                                "sequence.inputs=features", "cnn.weights=imagenet", "data.split=3"])
    assert (config.features.backend, config.features.device, config.features.precision) == ("openvino", "cpu", "fp32")
    assert (config.sequence.inputs, config.cnn.weights, config.data.split) == ("features", "imagenet", 3)


def test_unknown_key_in_a_file_names_the_file_and_the_key(tmp_path):
    path = tmp_path / "typo.toml"
    path.write_text("[lstm]\nevict_after = 3\n")
    with pytest.raises(ConfigError) as error:
        load_config(path)
    assert "lstm.evict_after" in str(error.value) and str(path) in str(error.value)


def test_missing_file_lists_the_shipped_configs(tmp_path):
    with pytest.raises(ConfigError, match="does not exist"):
        load_config(tmp_path / "nope.toml")


def test_a_resolved_config_round_trips_through_toml(tmp_path):
    config = load_config(None, ["capture.fps=9", "data.classes=['A', 'B']", 'supervisor.log_dir="x y"'])
    path = tmp_path / "resolved.toml"
    path.write_text(config_to_toml(config))
    assert load_config(path) == config


@pytest.mark.parametrize("name", sorted(p.name for p in CONFIG_DIR.glob("*.toml")))
def test_every_shipped_config_loads(name):
    assert isinstance(load_config(CONFIG_DIR / name), Config)
