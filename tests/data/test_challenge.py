"""ecgkeras.data.challenge: Challenge-format records (SNOMED-CT #Dx) as a PTB-XL-like dataset."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from helpers import write_challenge_copy

from ecgkeras import EcgkerasError
from ecgkeras.data.challenge import DX_TO_PTBXL, challenge_classes, load_challenge, seeded_folds
from ecgkeras.data.ptbxl import read_database, read_statements


def test_every_mapped_statement_has_its_subclass_and_superclass_in_scp_statements(real_ptbxl):
    statements = read_statements(real_ptbxl)
    for code, mapped in DX_TO_PTBXL.items():
        if mapped.statement is None:
            assert mapped.superclass in set(statements["diagnostic_class"].dropna()), code
            continue
        row = statements.loc[mapped.statement]
        assert row["diagnostic"] == 1, code
        assert (row["diagnostic_subclass"], row["diagnostic_class"]) == (mapped.subclass, mapped.superclass), code
    assert "NORM" not in challenge_classes("subclass") and challenge_classes("superclass") == ["CD", "HYP", "MI", "STTC"]


def test_a_challenge_copy_of_the_real_subset_loads_with_ptbxl_labels(challenge_subset, real_ptbxl):
    data = load_challenge(challenge_subset, progress=False)
    assert data.X.shape[1:] == (1000, 12) and len(data.X) == len(data.Y) == len(data.ecg_ids)
    meta = read_database(real_ptbxl)
    statements = {mapped.statement: mapped.subclass for mapped in DX_TO_PTBXL.values() if mapped.statement}
    for ecg_id, labels in zip(data.ecg_ids, data.Y):
        expected = {statements[code] for code in meta.loc[int(ecg_id[1:]), "scp_codes"] if code in statements}
        assert {name for name, on in zip(data.classes, labels) if on} == expected, ecg_id
    assert list(data.unmapped) == ["426783006"] and data.unmapped["426783006"] >= sum("SR" in codes for codes in meta["scp_codes"])  # listed, not guessed
    assert data.excluded["no label at the level"] and len(data.ecg_ids) + data.n_dropped == len(meta)
    assert sorted(data.meta["fs"].unique()) == [250, 257, 360, 1000]
    by_patient = data.meta.groupby("patient")["strat_fold"].nunique()
    assert (by_patient == 1).all() and data.folds.min() >= 1 and data.folds.max() <= 10  # patient-aware
    again = load_challenge(challenge_subset, progress=False)  # from the signal cache, the same folds
    assert isinstance(again.signals, np.memmap) and (again.folds == data.folds).all()
    superclass = load_challenge(challenge_subset, label_level="superclass", progress=False)
    assert superclass.classes == ["CD", "HYP", "MI", "STTC"]


def test_seeded_folds_keep_patients_together_and_follow_the_seed():
    groups = [f"p{k // 3}" for k in range(90)]
    folds = seeded_folds(groups, seed=1)
    assert pd.Series(folds).groupby(groups).nunique().max() == 1 and set(folds) == set(range(1, 11))
    assert (seeded_folds(groups, seed=1) == folds).all() and (seeded_folds(groups, seed=2) != folds).any()


def _copy(real_ptbxl, folder, ids=(9, 30, 32, 41, 45), **options):
    return write_challenge_copy(real_ptbxl, folder, ecg_ids=list(ids), **options)


@pytest.mark.parametrize("dx, needle", [("Dx: LBBB", "#Dx 'LBBB' is not a comma-separated list"),
                                        ("Dx: 164909002,,", "is not a comma-separated list"), (None, "has no #Dx line")])
def test_a_garbage_or_missing_dx_is_a_one_line_error(real_ptbxl, tmp_path, dx, needle):
    folder = _copy(real_ptbxl, tmp_path / "c")
    header = folder / "E00030.hea"
    lines = [line for line in header.read_text().splitlines() if not line.lstrip("# ").startswith("Dx")]
    header.write_text("\n".join(lines + ([f"#{dx}"] if dx else [])) + "\n")
    with pytest.raises(EcgkerasError) as error:
        load_challenge(folder, cache_dir=tmp_path / "cache", progress=False)
    assert "\n" not in str(error.value) and needle in str(error.value) and "E00030.hea" in str(error.value)


def test_short_records_and_coarse_codes_are_stated_exclusions(real_ptbxl, tmp_path):
    folder = _copy(real_ptbxl, tmp_path / "c", folds=True)
    header = folder / "E00030.hea"  # LVH; and generic MI (no site): the subclass is unknown
    header.write_text(header.read_text().replace("Dx: 164873001", "Dx: 164873001,164865005"))
    data = load_challenge(folder, duration=10, cache_dir=tmp_path / "cache", progress=False)
    assert data.excluded["only codes coarser than the level"] == ["E00030"]
    assert "E00030" not in data.ecg_ids
    superclass = load_challenge(folder, label_level="superclass", cache_dir=tmp_path / "cache", progress=False)
    row = list(superclass.ecg_ids).index("E00030")
    assert superclass.Y[row, superclass.classes.index("MI")] == 1
    with pytest.raises(EcgkerasError, match="none of the 5 records"):
        load_challenge(folder, duration=12, cache_dir=tmp_path / "cache", progress=False)
    assert (data.folds == data.meta["fold"].astype(int)).all()  # #Fold lines are used when every record has one


def test_other_label_levels_are_refused(real_ptbxl, tmp_path):
    with pytest.raises(EcgkerasError, match="subclass and superclass"):
        load_challenge(_copy(real_ptbxl, tmp_path / "c"), label_level="form", progress=False)
