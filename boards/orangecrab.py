"""Good Stuff Department OrangeCrab r0.2: ECP5 (CSFBGA285, speed 8), 48 MHz oscillator. Its USB
goes to the FPGA itself, so the UART is on the Feather header pins 0 (RX) and 1 (TX) for a
3.3 V USB-UART adapter."""

from .target import Target

_COMMON = dict(family="ecp5", package="CSFBGA285", clock_mhz=48.0, speed="8",
               uart={"rx": "0", "tx": "1", "conn": ("io", 0), "attrs": {"IO_TYPE": "LVCMOS33"}},
               uart_note="connect a 3.3 V USB-UART: its TX to Feather pin 0, its RX to pin 1")

ORANGECRAB_25F = Target(
    name="orangecrab-25f", device="LFE5U-25F",
    available={"LUT": 24288, "FF": 24288, "DSP": 28, "BRAM": 56},
    description="OrangeCrab r0.2 (ECP5 LFE5U-25F), 48 MHz, UART on Feather pins 0/1",
    pnr_device=("--25k",), platform="amaranth_boards.orangecrab_r0_2:OrangeCrabR0_2_25FPlatform",
    **_COMMON,
)

ORANGECRAB_85F = Target(
    name="orangecrab-85f", device="LFE5U-85F",
    available={"LUT": 83640, "FF": 83640, "DSP": 156, "BRAM": 208},
    description="OrangeCrab r0.2 (ECP5 LFE5U-85F), 48 MHz, UART on Feather pins 0/1",
    pnr_device=("--85k",), platform="amaranth_boards.orangecrab_r0_2:OrangeCrabR0_2_85FPlatform",
    **_COMMON,
)
