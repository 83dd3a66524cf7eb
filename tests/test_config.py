"""The config schema, overrides and the one-line errors of `mnist train --dry-run`."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner

from mnist_cli.cli import cli
from mnist_cli.config import load_config
from mnist_cli.errors import ConfigError

CONFIGS = sorted((Path(__file__).parent.parent / "configs").glob("*.yaml"))
SWEEPS = sorted((Path(__file__).parent.parent / "sweeps").glob("*.yaml"))


def write_config(folder: Path, text: str) -> Path:
    path = folder / "experiment.yaml"
    path.write_text(text)
    return path


def test_every_bundled_config_validates():
    assert len(CONFIGS) >= 5
    for path in CONFIGS:
        config = load_config(path)
        assert config.model.stack()[0] == 784 and config.model.stack()[-1] == 10


def test_every_bundled_sweep_validates_and_a_committee_repeats_its_config_by_seed():
    from mnist_cli.sweep.schema import load_sweep_file

    sweeps = {path.stem: load_sweep_file(path) for path in SWEEPS}
    assert "keras-lr-width" in sweeps
    for name, seeds in (("dense-record-committee", [0, 1]),
                        ("dense-augmented-committee", [0, 1, 2, 3, 4])):
        committee = sweeps[name]
        assert committee.grid() == {"seed": seeds}
        base = load_config(CONFIGS[0].parent / f"{name.removesuffix('-committee')}.yaml")
        assert committee.base_config == base.to_dict()
    # The record config holds out no validation set: its committee records training accuracy.
    assert sweeps["dense-record-committee"].metric == "accuracy"


def test_bundled_recipes_match_the_tutorials():
    by_name = {path.stem: load_config(path) for path in CONFIGS}
    keras_tutorial = by_name["keras-784-500-10"]
    assert keras_tutorial.model.stack() == [784, 500, 10]
    assert keras_tutorial.data.binarize and keras_tutorial.data.binarize_threshold == 0.0
    assert (keras_tutorial.data.split, keras_tutorial.data.test_fraction,
            keras_tutorial.data.validation_split) == ("pooled", 0.25, 0)
    assert (keras_tutorial.train.optimizer, keras_tutorial.train.batch_size,
            keras_tutorial.train.epochs) == ("adam", 300, 20)
    nielsen = by_name["nielsen-784-30-10"]
    assert [layer.activation for layer in nielsen.model.dense_layers()] == ["sigmoid", "sigmoid"]
    assert (nielsen.train.optimizer, nielsen.train.learning_rate, nielsen.train.batch_size,
            nielsen.train.epochs, nielsen.train.loss) == ("sgd", 3.0, 10, 30, "quadratic")
    tf2 = by_name["tf2-784-512-256-10"]
    assert tf2.model.stack() == [784, 512, 256, 10]
    assert [layer.activation for layer in tf2.model.dense_layers()] == ["relu", "relu", "linear"]
    assert (tf2.train.optimizer, tf2.train.learning_rate, tf2.train.loss,
            tf2.train.batch_size, tf2.train.epochs) == ("sgd", 0.001, "sum_squared_error", 200, 30)
    assert not tf2.train.shuffle and tf2.data.validation_split == 0
    softmax = by_name["softmax-784-10"]
    assert softmax.model.stack() == [784, 10]
    assert (softmax.train.optimizer, softmax.train.learning_rate, softmax.train.batch_size,
            softmax.train.steps, softmax.data.validation_split) == ("sgd", 0.5, 100, 1000, 5000)


def test_precedence_defaults_file_set_flags(tmp_path):
    path = write_config(tmp_path, "train:\n  epochs: 7\n  batch_size: 32\n")
    config = load_config(path, ["train.epochs=5", "train.learning_rate=0.01"],
                         {"train.batch_size": 16, "seed": None})
    assert config.train.epochs == 5  # --set beats the file
    assert config.train.batch_size == 16  # a flag beats the file
    assert config.train.learning_rate == 0.01
    assert config.seed == 0  # an unset flag leaves the default


def test_long_form_layers_fill_defaults():
    config = load_config(None, [
        "model.layers=[784, {units: 64, dropout: 0.2}, {units: 32, activation: tanh}, 10]",
        "model.hidden_activation=sigmoid",
    ])
    layers = config.model.dense_layers()
    assert [(layer.units, layer.activation, layer.dropout) for layer in layers] == [
        (64, "sigmoid", 0.2), (32, "tanh", 0.0), (10, "softmax", 0.0)]


def test_resolved_config_round_trips(tmp_path):
    config = load_config(CONFIGS[0])
    saved = write_config(tmp_path, config.to_yaml())
    assert load_config(saved) == config


@pytest.mark.parametrize("text, expected", [
    ("train:\n  optimizer: adma\n",
     "train.optimizer: must be one of 'adam', 'adamw', 'sgd' or 'rmsprop'"),
    ("trian:\n  epochs: 3\n", "trian: unknown key"),
    ("model:\n  layers: [784, 500, 11]\n", "end the stack with 10"),
    ("model:\n  layers: [100, 500, 10]\n", "start the stack with 784"),
    ("model:\n  layers: [784, 0, 10]\n", "model.layers[1]: must be greater than 0"),
    ("model:\n  layers: [784, {units: 5, activaton: relu}, 10]\n",
     "model.layers[1].activaton: unknown key"),
    ("model:\n  hidden_activation: rleu\n", "model.hidden_activation: must be one of"),
    ("train:\n  epochs: many\n", "train.epochs: must be a valid integer"),
    ("train:\n  learning_rate: 0\n", "train.learning_rate: must be greater than 0"),
    ("train:\n  batch_size: -3\n", "train.batch_size: must be greater than 0"),
    ("data: [1, 2]\n", "data: must be a mapping of keys, not a list"),
    ("- a\n- b\n", "must be a mapping of keys"),
    ("", "the config file is empty"),
    ("train:\n  epochs: [3\n", "YAML syntax error"),
    ("name: ../../etc\n", "name: use only letters"),
    ("train:\n  optimizer: adam\n  momentum: 0.9\n", "momentum applies to sgd and rmsprop"),
    ("train:\n  optimizer: rmsprop\n  nesterov: true\n", "nesterov applies to the sgd"),
    ("train:\n  optimizer: adamw\n  momentum: 0.9\n", "adamw has its own (beta_1)"),
    ("train:\n  optimizer: adam\n  weight_decay: 0.01\n", "weight_decay applies to the adamw"),
    ("train:\n  loss: mse\n  label_smoothing: 0.1\n", "label_smoothing applies to the "
     "categorical_crossentropy loss only"),
    ("train:\n  label_smoothing: 1.0\n", "train.label_smoothing: must be less than 1"),
    ("train:\n  clip_norm: 0\n", "train.clip_norm: must be greater than 0"),
    ("model:\n  max_norm: -1\n", "model.max_norm: must be greater than 0"),
    ("model:\n  l2: -0.1\n", "model.l2: must be greater than or equal to 0"),
    # Every problem is named, and a key with a line break in it stays on the one line.
    ('model:\n  layers: [784, {"\\r": 0}, 10]\n', "model.layers[1].'\\r': unknown key"),
])
def test_bad_configs_give_one_line_and_exit_2(tmp_path, text, expected):
    path = write_config(tmp_path, text)
    result = CliRunner().invoke(cli, ["train", "--config", str(path), "--dry-run", "--no-summary"])
    assert result.exit_code == 2, result.output
    assert expected in result.output
    assert str(path) in result.output  # the file is named
    assert "Traceback" not in result.output
    assert len(result.output.strip().splitlines()) == 1


def test_yaml_syntax_error_names_the_line(tmp_path):
    path = write_config(tmp_path, "name: x\ntrain:\n  epochs: [3\n")
    with pytest.raises(ConfigError, match=r"line \d+"):
        load_config(path)


def test_bad_override_syntax():
    result = CliRunner().invoke(cli, ["train", "--set", "train.epochs", "--dry-run"])
    assert result.exit_code == 2
    assert "expected KEY=VALUE" in result.output
    # `--set KEY VALUE`, as other tools take it: a hint, not click's stray-argument error.
    result = CliRunner().invoke(cli, ["train", "-c", str(CONFIGS[0]), "--set", "train.epochs",
                                      "5", "--dry-run"])
    assert result.exit_code == 2
    assert "write --set train.epochs=VALUE" in result.output
    assert len(result.output.strip().splitlines()) == 1


def test_a_config_with_several_problems_names_them_all(tmp_path):
    path = write_config(tmp_path, "train:\n  epochs: many\n  batch_size: -3\nmodel:\n"
                                  "  hidden_activation: rleu\n")
    result = CliRunner().invoke(cli, ["train", "--config", str(path), "--dry-run", "--no-summary"])
    assert result.exit_code == 2, result.output
    for problem in ("train.epochs: must be a valid integer", "train.batch_size: must be greater",
                    "model.hidden_activation: must be one of"):
        assert problem in result.output
    assert len(result.output.strip().splitlines()) == 1


def test_missing_config_file(tmp_path):
    result = CliRunner().invoke(cli, ["train", "-c", str(tmp_path / "nope.yaml"), "--dry-run"])
    assert result.exit_code == 2
    assert "config file not found" in result.output


def test_dry_run_prints_resolved_config_without_training(tmp_path):
    result = CliRunner().invoke(cli, ["train", "-c", str(CONFIGS[0]), "--dry-run", "--no-summary",
                                      "--epochs", "4", "--out", str(tmp_path / "runs")])
    assert result.exit_code == 0, result.output
    printed = yaml.safe_load(result.output)
    assert printed["train"]["epochs"] == 4
    assert printed["output"]["root"] == str(tmp_path / "runs")
    assert not (tmp_path / "runs").exists()


def test_every_command_help_has_an_example():
    runner = CliRunner()
    assert "Example:" in runner.invoke(cli, ["--help"]).output
    for name in cli.commands:
        result = runner.invoke(cli, [name, "--help"])
        assert result.exit_code == 0
        assert "Example:" in result.output, name
