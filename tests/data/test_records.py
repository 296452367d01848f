"""ecgkeras.data.records: a WFDB record at any rate, lead spelling and order, in mV or uV, read as PTB-XL's 12 leads."""

from __future__ import annotations

import numpy as np
import pytest
from helpers import write_ecg_copy

from ecgkeras import EcgkerasError
from ecgkeras.data.ptbxl import LEADS, read_ecg
from ecgkeras.data.records import canonical_lead, describe_conversions, read_record

RECORD = "records100/00000/00009_lr"


@pytest.mark.parametrize("name, lead", [("aVR", "AVR"), ("AVR", "AVR"), ("avr", "AVR"), ("lead V1", "V1"),
                                        ("ii", "II"), ("DIII", "III"), ("v6", "V6"), ("-aVR", None), ("X", None)])
def test_lead_names_in_common_spellings(name, lead):
    assert canonical_lead(name) == lead


@pytest.mark.parametrize("rate", [250, 257, 360, 1000])
@pytest.mark.parametrize("mat", [True, False])
def test_a_resampled_renamed_reordered_copy_reads_back_as_the_original(real_ptbxl, tmp_path, rate, mat):
    original = read_ecg(real_ptbxl / RECORD, 100)
    unit = "uV" if rate == 360 else "mV"
    ecg = read_record(write_ecg_copy(real_ptbxl / RECORD, tmp_path, "copy", rate, unit=unit, mat=mat), 100)
    assert ecg.signal.shape == original.shape == (1000, 12)
    inner = slice(20, -20)  # the polyphase filter's edges (0.2 s) ring a little
    assert np.abs(ecg.signal[inner] - original[inner]).max() < 0.01  # mV
    assert ecg.conversions["source_rate"] == rate and "resample_poly" in ecg.conversions["resampling"]
    assert ecg.conversions["leads"]["AVR"] == "aVR" and ecg.conversions["lead_order"][0] == "V1"
    assert (unit == "uV") == ("units" in ecg.conversions)
    assert f"{rate} Hz -> 100 Hz" in describe_conversions(ecg.conversions)


def test_the_same_rate_and_names_are_read_unchanged(real_ptbxl, tmp_path):
    ecg = read_record(write_ecg_copy(real_ptbxl / RECORD, tmp_path, "same", leads=list(LEADS), mat=False), 100)
    np.testing.assert_array_equal(ecg.signal, read_ecg(real_ptbxl / RECORD, 100))
    assert describe_conversions(ecg.conversions).startswith("none")


@pytest.mark.parametrize("leads, unit, needles", [
    (["I", "II", "III", "aVR", "aVL", "aVF", "V1", "V2", "V3", "V5", "V6", "X"], "mV", ["lacks lead(s) V4", "never filled in"]),
    (["I", "II", "III", "aVR", "aVL", "aVF", "V1", "V2", "V3", "V4", "V5", "v5"], "mV", ["lead V5 twice"]),
    (list(LEADS), "mmHg", ["unknown units 'mmHg'", "mV, uV or V"]),
])
def test_a_missing_lead_or_an_unknown_unit_is_a_one_line_error(real_ptbxl, tmp_path, leads, unit, needles):
    copy = write_ecg_copy(real_ptbxl / RECORD, tmp_path, "bad", leads=[lead if lead != "X" else "V4" for lead in leads],
                          unit=unit)
    if "X" in leads:  # the 12th channel is not a lead of the 12
        copy.with_suffix(".hea").write_text(copy.with_suffix(".hea").read_text().replace(" V4\n", " X\n"))
    with pytest.raises(EcgkerasError) as error:
        read_record(copy, 100)
    assert "\n" not in str(error.value) and all(needle in str(error.value) for needle in needles), error.value
