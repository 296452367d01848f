"""The study tests place runs on devices themselves: no CUDA_VISIBLE_DEVICES inherited from the user."""

import pytest


@pytest.fixture(autouse=True)
def no_visible_devices_setting(monkeypatch):
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
