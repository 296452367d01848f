"""Datasets in the PhysioNet/CinC Challenge 2020/2021 format (CPSC2018, Georgia, Chapman-Shaoxing, Ningbo,
INCART, PTB, PTB-XL as the Challenge distributes them): a folder of WFDB records (`.hea` with a `.mat` or
`.dat`) whose headers carry `#Age`, `#Sex` and `#Dx` (SNOMED-CT codes, comma-separated).

`load_challenge` reads one into the same `PTBXL` dataset object as PTB-XL (signals through the same
memory-mapped cache), with labels at PTB-XL's diagnostic `subclass` or `superclass` level from `DX_TO_PTBXL`.

The mapping. Its SNOMED-CT codes and names are those of the Challenge's published diagnosis mapping
(`dx_mapping_scored.csv` and `dx_mapping_unscored.csv` of physionetchallenges/evaluation-2021); each is
matched to the PTB-XL diagnostic statement of the same meaning in PTB-XL's `scp_statements.csv`, whose
`diagnostic_subclass` and `diagnostic_class` columns give its subclass and superclass (a test checks every
row against that file). The Challenge scores 164909002/733534002 (LBBB) and 59118001/713427006 (RBBB) as one
diagnosis; so does this mapping. Codes naming only a superclass (e.g. 164865005 "myocardial infarction",
with no site) label the superclass only: at the subclass level a record carrying one is excluded (its
subclass is unknown) and counted. Every other code has no PTB-XL diagnostic counterpart: rhythms (426783006
sinus rhythm, which is not PTB-XL's NORM "normal ECG": NORM has no counterpart), axes, ST/T form statements,
beats. Those codes are listed with their counts (`unmapped`), never guessed; a record left without any
label at the level is dropped and counted, as PTB-XL does.

Records: each is read with `ecgkeras.data.records.read_record` (any rate, lead spelling and order, mV/uV)
and kept for `duration` seconds (default 10, PTB-XL's length): a longer record keeps its first `duration`
seconds, a shorter one is excluded and counted. Folds: a header line `#Fold: k` (1-10) on every record
sets them; otherwise a seeded split into 10 folds, patient-aware when the headers name a patient
(`#Patient: ID`, all of a patient's records in one fold), else record by record.
"""

from __future__ import annotations

import hashlib
import logging
from collections import Counter
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import NamedTuple

import numpy as np
import pandas as pd
import wfdb

from ecgkeras.data.ptbxl import DEFAULT_FOLDS, PTBXL, RecordReader, load_signals
from ecgkeras.data.records import read_record
from ecgkeras.errors import EcgkerasError

log = logging.getLogger(__name__)

LEVELS = ("subclass", "superclass")  # PTB-XL's diagnostic levels the mapping reaches
DEFAULT_DURATION = 10.0  # seconds kept of each record (PTB-XL's length)
N_FOLDS = 10


class Mapped(NamedTuple):
    """A SNOMED-CT code's PTB-XL counterpart: the Challenge's name, PTB-XL's statement, subclass, superclass."""

    name: str
    statement: str | None
    subclass: str | None
    superclass: str


DX_TO_PTBXL: dict[str, Mapped] = {
    "164909002": Mapped("left bundle branch block", "CLBBB", "CLBBB", "CD"),
    "733534002": Mapped("complete left bundle branch block", "CLBBB", "CLBBB", "CD"),
    "59118001": Mapped("right bundle branch block", "CRBBB", "CRBBB", "CD"),
    "713427006": Mapped("complete right bundle branch block", "CRBBB", "CRBBB", "CD"),
    "713426002": Mapped("incomplete right bundle branch block", "IRBBB", "IRBBB", "CD"),
    "251120003": Mapped("incomplete left bundle branch block", "ILBBB", "ILBBB", "CD"),
    "270492004": Mapped("1st degree av block", "1AVB", "_AVB", "CD"),
    "195042002": Mapped("2nd degree av block", "2AVB", "_AVB", "CD"),
    "54016002": Mapped("mobitz type i wenckebach atrioventricular block", "2AVB", "_AVB", "CD"),
    "426183003": Mapped("mobitz type II atrioventricular block", "2AVB", "_AVB", "CD"),
    "27885002": Mapped("complete heart block", "3AVB", "_AVB", "CD"),
    "445118002": Mapped("left anterior fascicular block", "LAFB", "LAFB/LPFB", "CD"),
    "445211001": Mapped("left posterior fascicular block", "LPFB", "LAFB/LPFB", "CD"),
    "698252002": Mapped("nonspecific intraventricular conduction disorder", "IVCD", "IVCD", "CD"),
    "74390002": Mapped("wolff parkinson white pattern", "WPW", "WPW", "CD"),
    "164873001": Mapped("left ventricular hypertrophy", "LVH", "LVH", "HYP"),
    "89792004": Mapped("right ventricular hypertrophy", "RVH", "RVH", "HYP"),
    "67741000119109": Mapped("left atrial enlargement", "LAO/LAE", "LAO/LAE", "HYP"),
    "446358003": Mapped("right atrial hypertrophy", "RAO/RAE", "RAO/RAE", "HYP"),
    "54329005": Mapped("anterior myocardial infarction", "AMI", "AMI", "MI"),
    "111975006": Mapped("prolonged qt interval", "LNGQT", "STTC", "STTC"),
    "426434006": Mapped("anterior ischemia", "ISCAN", "ISCA", "STTC"),
    "425623009": Mapped("lateral ischaemia", "ISCLA", "ISCA", "STTC"),
    "425419005": Mapped("inferior ischaemia", "ISCIN", "ISCI", "STTC"),
    # superclass only: no site, stage or kind that would name a subclass
    "164865005": Mapped("myocardial infarction", None, None, "MI"),
    "57054005": Mapped("acute myocardial infarction", None, None, "MI"),
    "164867002": Mapped("old myocardial infarction", None, None, "MI"),
    "164861001": Mapped("myocardial ischemia", None, None, "STTC"),
    "266249003": Mapped("ventricular hypertrophy", None, None, "HYP"),
    "195126007": Mapped("atrial hypertrophy", None, None, "HYP"),
}


def level_of(mapped: Mapped, level: str) -> str | None:
    return mapped.subclass if level == "subclass" else mapped.superclass


def challenge_classes(level: str) -> list[str]:
    """The sorted classes of `level` the mapping reaches (the same whatever records are loaded)."""
    return sorted({name for mapped in DX_TO_PTBXL.values() if (name := level_of(mapped, level))})


@dataclass
class ChallengeData(PTBXL):
    """A Challenge-format dataset as a `PTBXL` (ecg_ids are record names), with what was left out and why.

    `unmapped`: SNOMED-CT code -> records carrying it, for codes without a PTB-XL counterpart at the level;
    `excluded`: reason -> record names (too short, only coarser codes, no label at the level).
    """

    unmapped: dict[str, int] = field(default_factory=dict)
    excluded: dict[str, list[str]] = field(default_factory=dict)
    duration: float = DEFAULT_DURATION


def is_challenge_dir(data_dir: str | Path) -> bool:
    """Whether `data_dir` holds WFDB headers with a `#Dx` line (and is not a PTB-XL folder)."""
    header = next(Path(data_dir).rglob("*.hea"), None) if Path(data_dir).is_dir() else None
    return header is not None and any(line.lstrip("#").strip().lower().startswith("dx:")
                                      for line in header.read_text(errors="replace").splitlines()
                                      if line.startswith("#"))


def header_fields(comments: list[str]) -> dict[str, str]:
    """`#Key: value` comment lines as {key (lower case): value}."""
    fields = {}
    for line in comments:
        key, sep, value = line.lstrip("#").partition(":")
        if sep:
            fields[key.strip().lower()] = value.strip()
    return fields


def parse_dx(path: Path, fields: dict[str, str]) -> list[str]:
    """The SNOMED-CT codes of a header's `#Dx` line, or a one-line error naming the file."""
    if "dx" not in fields:
        raise EcgkerasError(f"{path} has no #Dx line: a Challenge-format header lists the record's SNOMED-CT "
                            "codes as '#Dx: 164889003,59118001'")
    codes = [code.strip() for code in fields["dx"].split(",")]
    if not codes or not all(code.isdigit() for code in codes):
        raise EcgkerasError(f"{path}: #Dx {fields['dx'][:60]!r} is not a comma-separated list of SNOMED-CT codes "
                            "(digits only, e.g. '#Dx: 164889003,59118001'): correct or remove this record")
    return codes


def _read(path: Path, sampling_rate: int, length: int) -> np.ndarray:
    return read_record(path, sampling_rate).signal[:length]


def seeded_folds(groups: list[str], seed: int, n_folds: int = N_FOLDS) -> np.ndarray:
    """Fold 1..n_folds of each record: its group (patient) shuffled with `seed`, folds dealt in turn."""
    unique = sorted(set(groups))
    order = np.random.default_rng(seed).permutation(len(unique))
    fold_of = {unique[index]: 1 + position % n_folds for position, index in enumerate(order)}
    return np.asarray([fold_of[group] for group in groups], dtype=np.int64)


def load_challenge(data_dir: str | Path, sampling_rate: int = 100, label_level: str = "subclass",
                   train_folds=DEFAULT_FOLDS["train"], val_folds=DEFAULT_FOLDS["val"],
                   test_folds=DEFAULT_FOLDS["test"], cache_dir: str | Path | None = None, use_cache: bool = True,
                   duration: float = DEFAULT_DURATION, split_seed: int = 0, progress: bool = True) -> ChallengeData:
    """A folder of Challenge-format records as a dataset (see the module notes for labels, lengths, folds)."""
    data_dir = Path(data_dir)
    if label_level not in LEVELS:
        raise EcgkerasError(f"label_level {label_level!r} is not available for Challenge-format data: its SNOMED-CT "
                            f"codes map to PTB-XL's {' and '.join(LEVELS)} (use one of them)")
    headers = sorted(data_dir.rglob("*.hea")) if data_dir.is_dir() else []
    if not headers:
        raise EcgkerasError(f"no WFDB header (.hea) under {data_dir}: give a folder of Challenge-format records")
    length = int(round(duration * sampling_rate))
    rows, unmapped, excluded = [], Counter(), {"shorter than the kept duration": [],
                                                "only codes coarser than the level": [], "no label at the level": []}
    classes = challenge_classes(label_level)
    for path in headers:
        try:
            header = wfdb.rdheader(str(path.with_suffix("")))
        except Exception as exc:
            raise EcgkerasError(f"{path} is not a readable WFDB header ({' '.join(str(exc).split())}): repair or "
                                "remove it") from None
        fields = header_fields(header.comments or [])
        codes = parse_dx(path, fields)
        name = path.relative_to(data_dir).with_suffix("").as_posix()
        labels = {level_of(DX_TO_PTBXL[code], label_level) for code in codes if code in DX_TO_PTBXL} - {None}
        unmapped.update(code for code in set(codes) if code not in DX_TO_PTBXL)
        if header.sig_len / header.fs < duration:
            excluded["shorter than the kept duration"].append(name)
        elif any(code in DX_TO_PTBXL and level_of(DX_TO_PTBXL[code], label_level) is None for code in codes):
            excluded["only codes coarser than the level"].append(name)
        elif not labels:
            excluded["no label at the level"].append(name)
        else:
            rows.append({"record": name, "filename": name, "fs": float(header.fs), "seconds": header.sig_len / header.fs,
                         "age": fields.get("age"), "sex": fields.get("sex"),
                         "dx": ",".join(codes), "patient": fields.get("patient") or name,
                         "fold": fields.get("fold"), "labels": labels})
    if not rows:
        raise EcgkerasError(f"none of the {len(headers)} records under {data_dir} has a PTB-XL {label_level} label "
                            f"at {duration:g} s or more ({', '.join(f'{k}: {len(v)}' for k, v in excluded.items())})")
    meta = pd.DataFrame(rows).set_index("record")
    given = meta["fold"].dropna()
    if len(given) == len(meta):
        if not all(str(fold).isdigit() and 1 <= int(fold) <= N_FOLDS for fold in given):
            raise EcgkerasError(f"the #Fold lines under {data_dir} must be integers 1-{N_FOLDS}")
        folds = meta["fold"].astype(int).to_numpy()
    else:
        folds = seeded_folds(meta["patient"].tolist(), split_seed)
    meta["strat_fold"] = folds
    Y = np.asarray([[name in labels for name in classes] for labels in meta["labels"]], dtype=np.uint8)
    split_folds = {"train": tuple(train_folds), "val": tuple(val_folds), "test": tuple(test_folds)}
    keep = np.isin(folds, [fold for part in split_folds.values() for fold in part])
    reader = RecordReader(f"challenge-{duration:g}s", partial(_read, sampling_rate=sampling_rate, length=length),
                          (".hea", ".mat", ".dat"))
    signals = load_signals(data_dir, meta["filename"].tolist(), sampling_rate, cache_dir, use_cache,
                           progress=progress, reader=reader)
    n_excluded = sum(len(names) for names in excluded.values())
    if n_excluded:
        log.warning("left out %d of %d records of %s (%s)", n_excluded, len(headers), data_dir,
                    ", ".join(f"{reason}: {len(names)}" for reason, names in excluded.items() if names))
    return ChallengeData(signals=signals, rows=np.flatnonzero(keep), Y=Y[keep], classes=classes,
                         ecg_ids=meta.index.to_numpy(dtype=str)[keep], folds=folds[keep], meta=meta[keep],
                         data_dir=data_dir, sampling_rate=sampling_rate, label_level=label_level,
                         split_folds=split_folds, n_dropped=n_excluded + int((~keep).sum()),
                         unmapped=dict(sorted(unmapped.items())), excluded=excluded, duration=duration)


def headers_digest(data_dir: str | Path) -> str:
    """SHA-256 of every header's name and contents (what a Challenge-format dataset's labels come from)."""
    digest = hashlib.sha256()
    for path in sorted(Path(data_dir).rglob("*.hea")):
        digest.update(path.relative_to(data_dir).as_posix().encode() + b"\0" + path.read_bytes())
    return digest.hexdigest()
