"""PTB-XL and other data: reading records, the signal cache, synthetic copies, the download."""

from ecgkeras.data.ptbxl import LEADS, PTBXL, Part, Signals, Standardizer, load_ptbxl

__all__ = ["LEADS", "PTBXL", "Part", "Signals", "Standardizer", "load_ptbxl"]
