"""Fine-tuning: a new run initialised from a trained run's weights and standardization, trained on another
dataset (Challenge format or PTB-XL's layout), optionally with the convolutional front-end frozen for the first
epochs, with a new head when the label set differs. It is a run like any other (the same configuration schema,
staging and record), whose record names its parent (`parent`)."""

from __future__ import annotations

import dataclasses
import shutil
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from ecgkeras.data.ptbxl import PTBXL
from ecgkeras.errors import EcgkerasError
from ecgkeras.runs.config import RunConfig
from ecgkeras.runs.experiment import evaluate_run
from ecgkeras.runs.prepare import checked_parts, load_dataset
from ecgkeras.runs.record import RunRecord, staged_run_dir, write_record
from ecgkeras.training import HISTORY_FILE, set_seed, train_model

FRONT_END = ("stem_pool", "conv", "bn", "relu", "pool")  # layer-name prefixes of models.conv_front_end
HEAD = "probabilities"  # the output layer of models.classification_head


def with_head(model, parent_classes: list[str], classes: list[str]):
    """`model` with a new sigmoid output for `classes`: the rows of classes the parent knew start from its
    weights, the others from Keras' initialisation (under the run's seed)."""
    import keras

    old = model.get_layer(HEAD)
    new = keras.layers.Dense(len(classes), activation="sigmoid", name=HEAD)
    outputs = new(old.input)
    weights, bias = old.get_weights()
    new_weights, new_bias = new.get_weights()
    for column, name in enumerate(classes):
        if name in parent_classes:
            new_weights[:, column] = weights[:, parent_classes.index(name)]
            new_bias[column] = bias[parent_classes.index(name)]
    new.set_weights([new_weights, new_bias])
    return keras.Model(model.inputs, outputs, name=model.name)


def set_front_end_trainable(model, trainable: bool) -> None:
    for layer in model.layers:
        if layer.name.startswith(FRONT_END):
            layer.trainable = trainable


def finetune_config(parent: RunRecord, data_dir: str | Path, parameters: dict[str, Any] | None = None) -> RunConfig:
    """The parent's configuration on `data_dir`, with `parameters` (flat run parameters) changed; the
    architecture and model, which the weights fix, cannot change."""
    parameters = dict(parameters or {})
    fixed = {"architecture", *RunConfig.parts()["model"].__dataclass_fields__}
    if changed := sorted(set(parameters) & fixed):
        raise EcgkerasError(f"fine-tuning keeps the parent's architecture and model: {', '.join(changed)} cannot change")
    return RunConfig.from_parameters(**{**parent.config.parameters(), "data_dir": str(data_dir), **parameters})


def finetune_experiment(parent_dir: str | Path, data_dir: str | Path, run_dir: str | Path,
                        parameters: dict[str, Any] | None = None, freeze_epochs: int = 0,
                        dataset: PTBXL | None = None, progress: bool = True) -> RunRecord:
    """Train a new run in `run_dir` from the run in `parent_dir` on `data_dir` (checked before anything is written)."""
    parent = RunRecord.load(parent_dir)
    config = finetune_config(parent, data_dir, parameters)
    if not 0 <= freeze_epochs < config.training.epochs:
        raise EcgkerasError(f"--freeze-epochs {freeze_epochs} must be between 0 and epochs - 1 "
                            f"({config.training.epochs - 1}): the front-end trains in the remaining epochs")
    if Path(run_dir).resolve() == parent.run_dir.resolve():
        raise EcgkerasError(f"the fine-tuned run needs its own folder, not its parent's {parent.run_dir}")
    data = dataset or load_dataset(config, progress)
    parts = checked_parts(config, data)
    input_length = config.training.crop_length or parts["train"].X.shape[1]
    if input_length != parent.data["input_shape"][0]:
        raise EcgkerasError(f"the model of {parent.run_dir} reads {parent.data['input_shape'][0]} samples, the records "
                            f"of {data_dir} give {input_length}: set crop_length to {parent.data['input_shape'][0]}")
    standardizer = parent.standardizer  # the parent's weights were learned on it
    started = datetime.now(timezone.utc)
    set_seed(config.seed, config.training.deterministic)
    model = parent.load_model()
    new_head = parent.classes != data.classes
    if new_head:
        model = with_head(model, parent.classes, data.classes)
    with staged_run_dir(run_dir) as staging:
        phases = []
        if freeze_epochs:
            set_front_end_trainable(model, False)
            frozen = dataclasses.replace(config.training, epochs=freeze_epochs)
            phases.append(train_model(model, parts["train"], parts["val"], staging / "frozen", frozen, config.seed,
                                      standardizer).assign(phase="frozen"))
            shutil.rmtree(staging / "frozen")
            set_front_end_trainable(model, True)
        remaining = dataclasses.replace(config.training, epochs=config.training.epochs - freeze_epochs)
        phases.append(train_model(model, parts["train"], parts["val"], staging, remaining, config.seed,
                                  standardizer).assign(phase="all layers"))
        history = pd.concat(phases, ignore_index=True)
        history["epoch"] = np.arange(1, len(history) + 1)
        history.to_csv(staging / HISTORY_FILE, index=False)
        evaluation = evaluate_run(config, model, parts["val"], parts["test"], standardizer, data.classes)
        write_record(staging, config, data, parts, model, history, evaluation, standardizer, started, parent={
            "run_dir": str(parent.run_dir.resolve()), "architecture": parent.architecture, "seed": parent.seed,
            "data_dir": parent.provenance["data_dir"], "classes": parent.classes, "new_head": new_head,
            "freeze_epochs": freeze_epochs, "standardizer": "the parent's"})
    return RunRecord.load(run_dir)
