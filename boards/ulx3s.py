"""Radiona ULX3S: ECP5 (CABGA381, speed 6), 25 MHz oscillator, UART through its FT231X."""

from .target import Target

_COMMON = dict(family="ecp5", package="CABGA381", clock_mhz=25.0, speed="6")

ULX3S_25F = Target(
    name="ulx3s-25f", device="LFE5U-25F",
    available={"LUT": 24288, "FF": 24288, "DSP": 28, "BRAM": 56},
    description="ULX3S (ECP5 LFE5U-25F), 25 MHz, UART on the FT231X",
    pnr_device=("--25k",), platform="amaranth_boards.ulx3s:ULX3S_25F_Platform", **_COMMON,
)

ULX3S_85F = Target(
    name="ulx3s-85f", device="LFE5U-85F",
    available={"LUT": 83640, "FF": 83640, "DSP": 156, "BRAM": 208},
    description="ULX3S (ECP5 LFE5U-85F), 25 MHz, UART on the FT231X",
    pnr_device=("--85k",), platform="amaranth_boards.ulx3s:ULX3S_85F_Platform", **_COMMON,
)
