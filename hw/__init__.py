"""Hardware: amaranth components, bit-exact to the compiler's numpy kernels.

Arithmetic units and processing elements (each file holds what its name says):

- ``requant``: ``RequantOrt`` (onnxruntime's float32 requantisation in integers),
  ``RequantDyadic`` (TFLite's fixed-point multiplier); per-tensor or per-channel.
- ``mac``: ``MultiplierArray`` (behavioural, iCE40 ``SB_MAC16`` dual 8x8 / 16x16, ECP5
  ``MULT18X18D``) and the stream ``Mac``.
- ``csd``: canonical-signed-digit shift-add products for known weights (no DSP).
- ``compare``: ``WindowMax`` for max pooling.
- ``eltwise_add``: ``EltwiseAddOrt`` (QLinearAdd's fma chain), ``EltwiseAddDyadic``.
- ``pe``: ``ProcessingElement`` — SIMD lanes, adder tree, accumulator, requant, weight ROM.
- ``pipeline``: the stall-together pipeline every unit is built on; ``testbench``: driving
  them in amaranth's simulator.
- ``engines``: the layer engines of the dataflow (see that package).
"""
