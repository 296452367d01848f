"""A run's data, loaded and checked before anything is written (the study's planner checks with the same
functions), and its train, validation and test parts; no TensorFlow."""

from __future__ import annotations

from pathlib import Path

from ecgkeras.data.ptbxl import DATABASE_CSV, PTBXL, Part, Standardizer, load_ptbxl
from ecgkeras.errors import EcgkerasError
from ecgkeras.models import check_model
from ecgkeras.runs.config import RunConfig


def load_records(data_dir: str | Path, sampling_rate: int, label_level: str, folds: tuple[tuple[int, ...], ...],
                 cache_dir: str | Path | None = None, progress: bool = True) -> PTBXL:
    """PTB-XL, or a folder of Challenge-format records (`ecgkeras.data.challenge`), whichever `data_dir` holds;
    `folds` are the train, validation and test folds."""
    from ecgkeras.data.challenge import is_challenge_dir, load_challenge

    challenge = not (Path(data_dir) / DATABASE_CSV).is_file() and is_challenge_dir(data_dir)
    load = load_challenge if challenge else load_ptbxl
    return load(data_dir, sampling_rate, label_level, *folds, cache_dir=cache_dir, progress=progress)


def load_dataset(config: RunConfig, progress: bool = True) -> PTBXL:
    """The run's data, loaded (and checked) before anything is written."""
    return load_records(config.data_dir, config.sampling_rate, config.label_level,
                        (config.train_folds, config.val_folds, config.test_folds), config.cache_dir, progress)


def checked_parts(config: RunConfig, data: PTBXL) -> dict[str, Part]:
    """The train, validation and test parts (memory-mapped), once the run is checked against its data:
    no split is empty, the crop fits the records and the model can be built on their input."""
    parts = {name: data.part(name) for name in ("train", "val", "test")}
    for name, part in parts.items():
        if len(part.X) == 0:
            raise EcgkerasError(f"the {name} split of {config.data_dir} is empty: check that the folds "
                                f"{data.split_folds[name]} exist in its {DATABASE_CSV}")
    crop = config.training.crop_length
    length = parts["train"].X.shape[1]
    if crop is not None and crop > length:
        raise EcgkerasError(f"crop_length={crop} does not fit records of {length} samples: give a length "
                            "between 1 and the record length, or None")
    check_model(config.architecture, (crop or length, parts["train"].X.shape[2]), len(data.classes), config.model,
                config.sampling_rate)
    return parts


def prepare_splits(config: RunConfig, data: PTBXL) -> tuple[Part, Part, Part, Standardizer]:
    """Train, validation and test parts (`checked_parts`) and the standardizer fitted on training only.

    Batches are standardized as they are read (`ecgkeras.training.make_dataset`), so no split is copied.
    """
    parts = checked_parts(config, data)
    return parts["train"], parts["val"], parts["test"], Standardizer.fit(parts["train"].X)
