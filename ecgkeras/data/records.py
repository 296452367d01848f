"""A 12-lead ECG from anywhere: a WFDB record (`.dat`, or the Challenge's `.mat`) at any sampling rate,
with its leads named in any common spelling and order and its samples in mV, uV or V, brought to what a
model reads: float32 (time, 12) in mV, leads in PTB-XL's order (`LEADS`), at the rate asked for.

Every conversion applied is returned with the signal (`ECG.conversions`), so that a prediction can say
what was done to its input. A lead that is missing is an error, never filled in.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import Any

import numpy as np
from scipy.signal import resample_poly

from ecgkeras.data.ptbxl import LEADS, read_wfdb
from ecgkeras.errors import EcgkerasError

# Spellings of the limb leads besides I, II, III (case, spaces and underscores do not matter, nor a "lead" prefix).
LEAD_ALIASES: dict[str, str] = {"D1": "I", "DI": "I", "D2": "II", "DII": "II", "D3": "III", "DIII": "III"}
UNITS_TO_MV: dict[str, float] = {"MV": 1.0, "UV": 1e-3, "V": 1e3}  # a header's units (µ/μ read as u), upper case
FIX = "give a 12-lead WFDB record (a .hea header and its .dat or .mat signal file)"


def canonical_lead(name: str) -> str | None:
    """`name` as one of `LEADS` ('aVR', 'AVR', 'avr', 'lead V1', 'DII' ...), or None. A sign is kept:
    '-aVR' (Cabrera's inverted aVR) is not aVR."""
    key = re.sub(r"[\s_]", "", str(name)).upper()
    key = key.removeprefix("LEAD")
    key = LEAD_ALIASES.get(key, key)
    return key if key in LEADS else None


def unit_factor(unit: str) -> float | None:
    """Factor from `unit` (a WFDB header's units field) to mV, or None when unknown."""
    key = str(unit).strip().replace("µ", "u").replace("μ", "u").upper()
    return UNITS_TO_MV.get(key)


@dataclass
class ECG:
    """One record as a model reads it: float32 (time, 12) in mV, PTB-XL's lead order, at `sampling_rate`.

    `conversions` says what was done (JSON-ready): source rate and resampling, lead renaming, reordering
    and channels left out, unit scaling. `comments` are the header's comment lines.
    """

    path: Path
    signal: np.ndarray
    sampling_rate: int
    conversions: dict[str, Any]
    comments: list[str] = field(default_factory=list)

    @property
    def seconds(self) -> float:
        return len(self.signal) / self.sampling_rate


def resampling_factors(source_rate: float, target_rate: int) -> tuple[int, int]:
    """(up, down) of the polyphase filter from `source_rate` to `target_rate` (rates to 1/1000 Hz)."""
    ratio = Fraction(target_rate) / Fraction(source_rate).limit_denominator(1000)
    return ratio.numerator, ratio.denominator


def read_record(path: str | Path, sampling_rate: int) -> ECG:
    """Read one WFDB record and bring it to (time, 12) mV at `sampling_rate` (see the module notes).

    Resampling is scipy.signal.resample_poly (a polyphase FIR filter with a Kaiser window) by the
    smallest integer factors; leads are matched by name whatever their spelling and order.
    """
    path = Path(path)
    header, samples = read_wfdb(path, FIX)
    names = list(header.sig_name or [])
    found: dict[str, int] = {}
    for index, name in enumerate(names):
        lead = canonical_lead(name)
        if lead is None:
            continue
        if lead in found:
            raise EcgkerasError(f"record {path}.hea has lead {lead} twice ({names[found[lead]]!r} and {name!r}): "
                                "keep one of them")
        found[lead] = index
    if missing := [lead for lead in LEADS if lead not in found]:
        raise EcgkerasError(f"record {path}.hea lacks lead(s) {', '.join(missing)} (it has {', '.join(names)}): "
                            "the models read all 12 leads and a missing one is never filled in; " + FIX)
    order = [found[lead] for lead in LEADS]
    factors = []
    for lead, index in zip(LEADS, order):
        factor = unit_factor(header.units[index])
        if factor is None:
            raise EcgkerasError(f"record {path}.hea gives lead {lead} in unknown units {header.units[index]!r}: "
                                f"use mV, uV or V in its header")
        factors.append(factor)
    signal = samples[:, order].astype(np.float64) * np.asarray(factors)
    conversions: dict[str, Any] = {"source_rate": float(header.fs), "sampling_rate": int(sampling_rate),
                                   "source_samples": int(len(signal))}
    if [names[index] for index in order] != list(LEADS):
        conversions["leads"] = {lead: names[index] for lead, index in zip(LEADS, order) if names[index] != lead} \
            or "reordered"
        conversions["lead_order"] = [names[index] for index in sorted(order)]
    if ignored := [name for index, name in enumerate(names) if index not in order]:
        conversions["ignored_channels"] = ignored
    if any(factor != 1.0 for factor in factors):
        conversions["units"] = {header.units[index]: factor for index, factor in zip(order, factors) if factor != 1.0}
    if float(header.fs) != sampling_rate:
        up, down = resampling_factors(header.fs, sampling_rate)
        signal = resample_poly(signal, up, down, axis=0)
        conversions["resampling"] = f"{header.fs:g} Hz -> {sampling_rate} Hz (scipy.signal.resample_poly, up {up}, down {down})"
    conversions["samples"] = int(len(signal))
    return ECG(path, signal.astype(np.float32), int(sampling_rate), conversions, list(header.comments or []))


def describe_conversions(conversions: dict[str, Any]) -> str:
    """The conversions in one line for people, e.g. '360 Hz -> 100 Hz (...); leads renamed avr->AVR; uV -> mV'."""
    parts = []
    if "resampling" in conversions:
        parts.append(conversions["resampling"])
    if isinstance(conversions.get("leads"), dict):
        parts.append("leads renamed " + ", ".join(f"{old}->{new}" for new, old in conversions["leads"].items()))
    elif conversions.get("leads"):
        parts.append(f"leads {conversions['leads']}")
    if conversions.get("ignored_channels"):
        parts.append(f"channels left out: {', '.join(conversions['ignored_channels'])}")
    if conversions.get("units"):
        parts.append(", ".join(f"{unit} -> mV (x{factor:g})" for unit, factor in conversions["units"].items()))
    if "windows" in conversions:
        parts.append(conversions["windows"])
    return "; ".join(parts) or "none (already 12 leads in mV at the run's rate)"
