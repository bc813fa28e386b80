"""Part-only targets: place and route on a device with no board (pins left to nextpnr), to see
whether and how fast a design fits before choosing a board. The clock is a nominal constraint."""

from .target import Target

ICE40_UP5K = Target(
    name="ice40-up5k", family="ice40", device="iCE40UP5K", package="SG48", clock_mhz=12.0,
    available={"LUT": 5280, "FF": 5280, "DSP": 8, "BRAM": 30},
    description="iCE40 UP5K (SG48), no board, 12 MHz constraint", pnr_device=("--up5k",),
)

ECP5_85F = Target(
    name="ecp5-85f", family="ecp5", device="LFE5U-85F", package="CABGA381", clock_mhz=25.0,
    speed="6", available={"LUT": 83640, "FF": 83640, "DSP": 156, "BRAM": 208},
    description="ECP5 LFE5U-85F (CABGA381, speed 6), no board, 25 MHz constraint",
    pnr_device=("--85k",),
)

GW1N_9 = Target(
    name="gw1n-9", family="gowin", device="GW1NR-LV9QN88PC6/I5", package="QN88P", clock_mhz=27.0,
    available={"LUT": 8640, "FF": 6480, "DSP": 20, "BRAM": 26},
    description="Gowin GW1NR-9C (QN88P, the Tang Nano 9K's die), no board, 27 MHz constraint",
    pnr_device=("GW1NR-LV9QN88PC6/I5", "GW1N-9C"),
    # nextpnr-himbaechel refuses unconstrained pins: the Tang Nano 9K's clock, UART, button, LED
    part_pins={"clk": "52", "rx": "18", "tx": "17", "rst": "4", "overflow": "10"},
)
