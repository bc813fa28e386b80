"""1BitSquared iCEBreaker: iCE40 UP5K (SG48), 12 MHz oscillator, UART through its FTDI
(channel B, pins 6/9)."""

from .target import Target

ICEBREAKER = Target(
    name="icebreaker", family="ice40", device="iCE40UP5K", package="SG48", clock_mhz=12.0,
    available={"LUT": 5280, "FF": 5280, "DSP": 8, "BRAM": 30},
    description="iCEBreaker (iCE40 UP5K), 12 MHz, UART on the FTDI",
    pnr_device=("--up5k",), platform="amaranth_boards.icebreaker:ICEBreakerPlatform",
)
