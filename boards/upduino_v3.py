"""tinyVision UPduino v3: iCE40 UP5K (SG48). Its FTDI only reaches the flash, so the UART is on
header pins for a 3.3 V USB-UART adapter; the clock is the internal 48 MHz oscillator divided by
4 (no jumper to solder)."""

from .target import Target

UPDUINO_V3 = Target(
    name="upduino-v3", family="ice40", device="iCE40UP5K", package="SG48", clock_mhz=12.0,
    available={"LUT": 5280, "FF": 5280, "DSP": 8, "BRAM": 30},
    description="UPduino v3 (iCE40 UP5K), 12 MHz from SB_HFOSC, UART on header pins",
    pnr_device=("--up5k",), platform="amaranth_boards.upduino_v3:UpduinoV3Platform",
    platform_attrs={"hfosc_div": 2},  # 48 MHz / 2^2
    # right header (JP6): pin 12 (FPGA pin 6) <- adapter TX, pin 11 (FPGA pin 9) -> adapter RX
    uart={"rx": "6", "tx": "9", "attrs": {"IO_STANDARD": "SB_LVCMOS", "PULLUP": 1}},
    uart_note="connect a 3.3 V USB-UART: its TX to FPGA pin 6, its RX to FPGA pin 9",
)
