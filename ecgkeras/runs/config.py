"""What defines a run: `RunConfig`, the run schema's top part (data, architecture, seed, evaluation),
with the model and training parts; the threshold policies and the scored splits."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any, ClassVar

from ecgkeras.data.ptbxl import DEFAULT_FOLDS, FILENAME_COLUMN, LABEL_LEVELS
from ecgkeras.errors import EcgkerasError
from ecgkeras.models import ARCHITECTURES, ModelConfig
from ecgkeras.schema import Schema, parameter
from ecgkeras.training import TrainingConfig

PER_RUN = ("architecture", "seed")  # what differs between the runs of one study


TUNED, FIXED = "tuned", "fixed"  # thresholds tuned per class on the validation fold; a fixed 0.5
POLICIES: tuple[str, ...] = (TUNED, FIXED)


SPLITS: tuple[str, ...] = ("val", "test")


_FOLD = {"minimum": 1, "maximum": 10}  # PTB-XL's strat_fold values


@dataclass
class RunConfig(Schema):
    """Everything that defines a run: data, architecture, seed, evaluation, model and training parts.

    `from_parameters` takes the flat names of the training notebook's parameters cell (run,
    model and training names mixed); `parameters` gives them back.
    """

    kind: ClassVar[str] = "run parameter"

    data_dir: str = parameter(help="PTB-XL folder (ptbxl_database.csv, scp_statements.csv, records100/ ...)")
    architecture: str = parameter("cnn-bilstm", "see `ecgkeras architectures`", choices=lambda: ARCHITECTURES)
    sampling_rate: int = parameter(100, "Hz: PTB-XL has 100 and 500", choices=tuple(FILENAME_COLUMN))
    label_level: str = parameter("subclass", "label level; subclass: the 23 diagnostic subclasses",
                                 choices=LABEL_LEVELS)
    seed: int = parameter(0, "seeds initial weights, shuffling and the bootstrap", minimum=0)
    train_folds: tuple[int, ...] = parameter(DEFAULT_FOLDS["train"], "strat_fold values to train on", **_FOLD)
    val_folds: tuple[int, ...] = parameter(DEFAULT_FOLDS["val"], "folds for early stopping and thresholds",
                                           **_FOLD)
    test_folds: tuple[int, ...] = parameter(DEFAULT_FOLDS["test"], "folds reported as test", **_FOLD)
    bootstrap_resamples: int = parameter(1000, "test-fold bootstrap resamples for 95% intervals; 0: none",
                                         minimum=0)
    cache_dir: str | None = parameter(None, "signal cache; None: $ECGKERAS_CACHE or ~/.cache/ecgkeras",
                                      affects_results=False)
    model: ModelConfig = field(default_factory=ModelConfig)
    training: TrainingConfig = field(default_factory=TrainingConfig)

    def __post_init__(self) -> None:
        super().__post_init__()
        if isinstance(self.model, dict):
            self.model = ModelConfig.from_dict(self.model)
        if isinstance(self.training, dict):
            self.training = TrainingConfig.from_dict(self.training)
        folds = [*self.train_folds, *self.val_folds, *self.test_folds]
        if len(folds) != len(set(folds)):
            raise EcgkerasError(f"train_folds={list(self.train_folds)}, val_folds={list(self.val_folds)} and "
                                f"test_folds={list(self.test_folds)} overlap: give each fold to one split")

    @staticmethod
    def parts() -> dict[str, type[Schema]]:
        """The schemas whose fields make up the flat parameters, in the notebook's order."""
        return {"run": RunConfig, "model": ModelConfig, "training": TrainingConfig}

    @classmethod
    def parameter_names(cls) -> dict[str, str]:
        """Every flat parameter name -> the part it belongs to ('run', 'model' or 'training')."""
        return {spec.name: part for part, schema in cls.parts().items()
                for spec in schema.__dataclass_fields__.values() if "constraint" in spec.metadata}

    @classmethod
    def from_parameters(cls, **params: Any) -> "RunConfig":
        """Build from flat parameters, refusing unknown names and wrong types with one-line errors."""
        names = cls.parameter_names()
        if unknown := sorted(set(params) - set(names)):
            raise EcgkerasError(f"unknown parameter(s) {unknown}: valid names are {', '.join(names)} "
                                "(see `ecgkeras parameters`)")
        grouped: dict[str, dict[str, Any]] = {part: {} for part in cls.parts()}
        for name, value in params.items():
            grouped[names[name]][name] = value
        return cls(**grouped["run"], model=ModelConfig.from_dict(grouped["model"]),
                   training=TrainingConfig.from_dict(grouped["training"]))

    def parameters(self) -> dict[str, Any]:
        """The flat parameters (as in the notebook), JSON-ready."""
        parts = {"run": self, "model": self.model, "training": self.training}
        values = {name: getattr(parts[part], name) for name, part in self.parameter_names().items()}
        return json.loads(json.dumps(values))

    def shared_parameters(self, results_only: bool = False) -> dict[str, Any]:
        """The parameters all runs of a study share (all but architecture and seed).

        With `results_only`, leaves out those that cannot change results (cache folder, verbosity).
        """
        keep = {spec.name for part in self.parts().values() for spec in part.__dataclass_fields__.values()
                if "constraint" in spec.metadata
                and (spec.metadata["constraint"].affects_results or not results_only)}
        return {name: value for name, value in self.parameters().items() if name in keep and name not in PER_RUN}
