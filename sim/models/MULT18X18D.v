// Behavioural model of the ECP5 MULT18X18D subset hw/mac.py instantiates (yosys ships only a
// black box): P = A * B (36 bits), each operand signed when its SIGNEDA/SIGNEDB pin is high,
// optional input registers (REG_INPUTA_CLK/REG_INPUTB_CLK = "CLK0") and output register
// (REG_OUTPUT_CLK = "CLK0") clocked by CLK0 and enabled by CE0, per Lattice FPGA-TN-02205
// ("ECP5 and ECP5-5G sysDSP Usage Guide"). Other modes (pipeline register, cascade, shift,
// RST, CLK1-3) are not modelled.
module MULT18X18D(
    input A17, A16, A15, A14, A13, A12, A11, A10, A9, A8, A7, A6, A5, A4, A3, A2, A1, A0,
    input B17, B16, B15, B14, B13, B12, B11, B10, B9, B8, B7, B6, B5, B4, B3, B2, B1, B0,
    input C17, C16, C15, C14, C13, C12, C11, C10, C9, C8, C7, C6, C5, C4, C3, C2, C1, C0,
    input SIGNEDA, SIGNEDB, SOURCEA, SOURCEB,
    input CLK3, CLK2, CLK1, CLK0, CE3, CE2, CE1, CE0, RST3, RST2, RST1, RST0,
    input SRIA17, SRIA16, SRIA15, SRIA14, SRIA13, SRIA12, SRIA11, SRIA10, SRIA9,
    input SRIA8, SRIA7, SRIA6, SRIA5, SRIA4, SRIA3, SRIA2, SRIA1, SRIA0,
    input SRIB17, SRIB16, SRIB15, SRIB14, SRIB13, SRIB12, SRIB11, SRIB10, SRIB9,
    input SRIB8, SRIB7, SRIB6, SRIB5, SRIB4, SRIB3, SRIB2, SRIB1, SRIB0,
    output SROA17, SROA16, SROA15, SROA14, SROA13, SROA12, SROA11, SROA10, SROA9,
    output SROA8, SROA7, SROA6, SROA5, SROA4, SROA3, SROA2, SROA1, SROA0,
    output SROB17, SROB16, SROB15, SROB14, SROB13, SROB12, SROB11, SROB10, SROB9,
    output SROB8, SROB7, SROB6, SROB5, SROB4, SROB3, SROB2, SROB1, SROB0,
    output P35, P34, P33, P32, P31, P30, P29, P28, P27, P26, P25, P24, P23, P22, P21, P20,
    output P19, P18, P17, P16, P15, P14, P13, P12, P11, P10, P9, P8, P7, P6, P5, P4, P3,
    output P2, P1, P0, SIGNEDP
);
    parameter REG_INPUTA_CLK = "NONE";
    parameter REG_INPUTA_CE = "CE0";
    parameter REG_INPUTA_RST = "RST0";
    parameter REG_INPUTB_CLK = "NONE";
    parameter REG_INPUTB_CE = "CE0";
    parameter REG_INPUTB_RST = "RST0";
    parameter REG_INPUTC_CLK = "NONE";
    parameter REG_INPUTC_CE = "CE0";
    parameter REG_INPUTC_RST = "RST0";
    parameter REG_PIPELINE_CLK = "NONE";
    parameter REG_PIPELINE_CE = "CE0";
    parameter REG_PIPELINE_RST = "RST0";
    parameter REG_OUTPUT_CLK = "NONE";
    parameter REG_OUTPUT_CE = "CE0";
    parameter REG_OUTPUT_RST = "RST0";
    parameter CLK0_DIV = "ENABLED";
    parameter CLK1_DIV = "ENABLED";
    parameter CLK2_DIV = "ENABLED";
    parameter CLK3_DIV = "ENABLED";
    parameter HIGHSPEED_CLK = "NONE";
    parameter GSR = "ENABLED";
    parameter CAS_MATCH_REG = "FALSE";
    parameter SOURCEB_MODE = "B_SHIFT";
    parameter MULT_BYPASS = "DISABLED";
    parameter RESETMODE = "SYNC";

    wire [17:0] A = {A17, A16, A15, A14, A13, A12, A11, A10, A9, A8, A7, A6, A5, A4, A3, A2, A1, A0};
    wire [17:0] B = {B17, B16, B15, B14, B13, B12, B11, B10, B9, B8, B7, B6, B5, B4, B3, B2, B1, B0};
    reg [17:0] rA = 0, rB = 0;
    reg rSA = 0, rSB = 0;
    always @(posedge CLK0) if (CE0) begin
        rA <= A; rB <= B; rSA <= SIGNEDA; rSB <= SIGNEDB;
    end
    wire [17:0] iA = (REG_INPUTA_CLK == "CLK0") ? rA : A;
    wire [17:0] iB = (REG_INPUTB_CLK == "CLK0") ? rB : B;
    wire sA = (REG_INPUTA_CLK == "CLK0") ? rSA : SIGNEDA;
    wire sB = (REG_INPUTB_CLK == "CLK0") ? rSB : SIGNEDB;
    wire [35:0] xA = {{18{sA & iA[17]}}, iA};
    wire [35:0] xB = {{18{sB & iB[17]}}, iB};
    wire [35:0] prod = xA * xB;
    reg [35:0] rP = 0;
    always @(posedge CLK0) if (CE0) rP <= prod;
    wire [35:0] P = (REG_OUTPUT_CLK == "CLK0") ? rP : prod;
    assign {P35, P34, P33, P32, P31, P30, P29, P28, P27, P26, P25, P24, P23, P22, P21, P20,
            P19, P18, P17, P16, P15, P14, P13, P12, P11, P10, P9, P8, P7, P6, P5, P4, P3,
            P2, P1, P0} = P;
    assign SIGNEDP = sA | sB;
endmodule
