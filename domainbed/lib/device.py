"""The device is chosen once: the GPU when there is one, else the CPU."""

import os

import torch


def get_device() -> torch.device:
    """``DOMAINBED_DEVICE`` (e.g. ``cpu``) overrides the automatic choice."""
    forced = os.environ.get("DOMAINBED_DEVICE")
    if forced:
        return torch.device(forced)
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")
