"""Boards and parts, and the yosys/nextpnr flow that builds bitstreams for them.

``TARGETS`` maps each ``--board`` name to a ``Target`` (one small data file per board);
``get_target(name)`` raises a ModelError listing them for an unknown name. ``build.py`` runs
the open toolchain (YoWASP yosys + nextpnr, icepack/ecppack, Apycula for Gowin).
"""

from __future__ import annotations

from intflow.compiler.errors import ModelError  # absolute: pytest imports boards/ as "boards" too

from .icebreaker import ICEBREAKER
from .orangecrab import ORANGECRAB_25F, ORANGECRAB_85F
from .parts import ECP5_85F, GW1N_9, ICE40_UP5K
from .tang_nano_9k import TANG_NANO_9K
from .target import Target
from .ulx3s import ULX3S_25F, ULX3S_85F
from .upduino_v3 import UPDUINO_V3

__all__ = ["TARGETS", "Target", "get_target"]

TARGETS: dict[str, Target] = {t.name: t for t in (
    ICEBREAKER, UPDUINO_V3, ULX3S_25F, ULX3S_85F, ORANGECRAB_25F, ORANGECRAB_85F, TANG_NANO_9K,
    ICE40_UP5K, ECP5_85F, GW1N_9,
)}


def get_target(name: str) -> Target:
    """The target called ``name`` (case-insensitive; ``_`` and ``-`` alike)."""
    key = name.strip().lower().replace("_", "-")
    aliases = {"tang-nano-9k": "tangnano9k", "ulx3s": "ulx3s-85f", "orangecrab": "orangecrab-85f",
               "upduino": "upduino-v3", "upduino3": "upduino-v3"}
    key = aliases.get(key, key)
    if key not in TARGETS:
        raise ModelError(f"unknown board {name!r}; targets: {', '.join(TARGETS)}")
    return TARGETS[key]
