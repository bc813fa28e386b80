"""What a build targets: a device (family, part, package, speed), its resources, a clock and,
for a board, the amaranth-boards platform that knows its pins.

Each target is one small file of data beside this one (``icebreaker.py``, ``ulx3s.py`` ...);
``TARGETS`` in ``__init__.py`` collects them by name.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass, field
from typing import Any

FAMILIES = ("ice40", "ecp5", "gowin")  # keys of compiler.dataflow.estimate.FAMILIES


@dataclass(frozen=True)
class Target:
    name: str  # what --board takes
    family: str  # "ice40" | "ecp5" | "gowin"
    device: str  # the part as its vendor names it
    package: str
    clock_mhz: float  # the clock the design runs at (and its timing constraint)
    available: dict[str, int]  # LUT, FF, DSP (18x18 or 16x16 multipliers), BRAM (blocks)
    description: str
    # nextpnr/pack arguments naming the part: ice40 --up5k, ecp5 --85k, gowin device + family
    pnr_device: tuple[str, ...] = ()
    speed: str = ""
    # a board: "module:Class" of amaranth-boards, attributes to set on the platform, and a UART
    # resource to add where the board has none ({"rx": pin, "tx": pin, "conn": (name, n)})
    platform: str | None = None
    platform_attrs: dict[str, Any] = field(default_factory=dict)
    uart: dict[str, Any] | None = None
    uart_note: str = ""
    # a part whose placer wants every pin placed (Gowin): top-level port -> pin
    part_pins: dict[str, str] = field(default_factory=dict)

    @property
    def board(self) -> bool:
        return self.platform is not None

    @property
    def clock_hz(self) -> float:
        return self.clock_mhz * 1e6

    def make_platform(self):
        """A fresh amaranth platform of the board, with the UART this flow talks through."""
        if self.platform is None:
            raise ValueError(f"{self.name} is a part without a board")
        module, _, cls = self.platform.partition(":")
        platform = getattr(importlib.import_module(module), cls)()
        for k, v in self.platform_attrs.items():
            setattr(platform, k, v)
        if self.uart is not None:
            from amaranth.build import Attrs
            from amaranth_boards.resources import UARTResource
            u = dict(self.uart)
            attrs = Attrs(**u.pop("attrs", {}))
            platform.add_resources([UARTResource(0, attrs=attrs, **u)])
        return platform
