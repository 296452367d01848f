"""ecgkeras.runs.config: one schema for every run parameter, checked, never coerced."""

from __future__ import annotations

import pytest

from ecgkeras import EcgkerasError
from ecgkeras.runs import RunConfig


@pytest.mark.parametrize("name, value, message", [
    ("epochs", "abc", "epochs='abc': expected an integer"),
    ("epochs", 1.5, "epochs=1.5: expected an integer"),
    ("epochs", True, "epochs=True: expected an integer"),
    ("epochs", 0, "epochs=0: must be >= 1"),
    ("learning_rate", "fast", "learning_rate='fast': expected a finite number"),
    ("learning_rate", float("nan"), "learning_rate=nan: expected a finite number"),
    ("deterministic", 1, "deterministic=1: expected true or false"),
    ("filters", [8, 8.5], r"filters=\[8, 8.5\]: expected a list of integers"),
    ("train_folds", [1, 11], r"train_folds=\(1, 11\): must be >= 1 and <= 10"),
    ("test_folds", [8], "overlap"),
    ("sampling_rate", 250, "sampling_rate=250: must be one of 100, 500"),
])
def test_wrong_values_are_refused_never_coerced(name, value, message):
    with pytest.raises(EcgkerasError, match=message):
        RunConfig.from_parameters(data_dir="x", **{name: value})


def test_unknown_parameters_are_refused():
    with pytest.raises(EcgkerasError, match="unknown parameter"):
        RunConfig.from_parameters(data_dir="x", learning_rat=0.1)
    with pytest.raises(EcgkerasError, match="architecture='cnn-tcnn': must be one of cnn, cnn-lstm"):
        RunConfig.from_parameters(data_dir="x", architecture="cnn-tcnn")
    with pytest.raises(EcgkerasError, match="loss='hinge': must be one of bce, weighted_bce, focal"):
        RunConfig.from_parameters(data_dir="x", loss="hinge")


def test_xla_without_turning_determinism_off_is_refused():
    with pytest.raises(EcgkerasError, match="deterministic=False"):
        RunConfig.from_parameters(data_dir="x", jit_compile=True)
    assert RunConfig.from_parameters(data_dir="x", jit_compile=True, deterministic=False).training.jit_compile
