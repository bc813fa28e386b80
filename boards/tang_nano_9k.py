"""Sipeed Tang Nano 9K: Gowin GW1NR-9C (QN88P), 27 MHz oscillator, UART through its BL702
(pins 18/17). Built with the direct open flow: synth_gowin, nextpnr-himbaechel (gowin),
Apycula's gowin_pack."""

from .target import Target

TANG_NANO_9K = Target(
    name="tangnano9k", family="gowin", device="GW1NR-LV9QN88PC6/I5", package="QN88P",
    clock_mhz=27.0,
    # DSP counted in 18x18 multipliers (each holds two MULT9X9)
    available={"LUT": 8640, "FF": 6480, "DSP": 20, "BRAM": 26},
    description="Tang Nano 9K (Gowin GW1NR-9C), 27 MHz, UART on the BL702",
    pnr_device=("GW1NR-LV9QN88PC6/I5", "GW1N-9C"),
    platform="amaranth_boards.tang_nano_9k:TangNano9kPlatform",
)
