"""Synthetic detector pulses for the PulseDL-II style example (numpy only, seeded).

Each waveform has ``N_SAMPLES`` samples of a bi-exponential pulse

    s(t) = A * (exp(-(t - t0) / tau_fall) - exp(-(t - t0) / tau_rise)) / PEAK   for t > t0
    s(t) = 0                                                                     for t <= t0

plus a constant baseline and white Gaussian noise. ``PEAK`` is the maximum of the
unnormalised shape, so ``A`` is the pulse height above the baseline (in the same units as the
waveform, full scale = 1). The arrival time ``t0`` is continuous (sub-sample), uniform in
``T0_RANGE``; the amplitude is log-uniform in ``AMP_RANGE``.

The network regresses ``[A, t0 / T0_SCALE]``; :func:`targets_to_physical` undoes the scaling.
"""

from __future__ import annotations

import numpy as np

N_SAMPLES = 64
TAU_RISE = 2.0  # samples
TAU_FALL = 8.0  # samples
T0_RANGE = (8.0, 24.0)  # samples, uniform
AMP_RANGE = (0.1, 1.0)  # log-uniform, full scale = 1
NOISE_SIGMA = 0.01
BASELINE_RANGE = (-0.02, 0.02)  # constant per waveform, uniform
T0_SCALE = 32.0  # network output 1 is t0 / T0_SCALE, so both outputs lie in [0, 1]

# Peak of exp(-t/tau_fall) - exp(-t/tau_rise), reached at t* = ln(tf/tr) * tf * tr / (tf - tr).
_T_PEAK = np.log(TAU_FALL / TAU_RISE) * TAU_FALL * TAU_RISE / (TAU_FALL - TAU_RISE)
PEAK = float(np.exp(-_T_PEAK / TAU_FALL) - np.exp(-_T_PEAK / TAU_RISE))


def pulse_shape(t: np.ndarray, t0: np.ndarray, amp: np.ndarray) -> np.ndarray:
    """Noise-free pulses, shape ``(len(t0), len(t))``; ``t0`` and ``amp`` are 1-D."""
    dt = t[None, :] - t0[:, None]
    pos = np.maximum(dt, 0.0)
    shape = np.exp(-pos / TAU_FALL) - np.exp(-pos / TAU_RISE)  # 0 at dt = 0, so continuous
    return amp[:, None] * np.where(dt > 0, shape, 0.0) / PEAK


def make_pulses(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Return ``(x, y)``: ``x`` float32 ``(n, 1, N_SAMPLES)``, ``y`` float32 ``(n, 2)`` =
    ``[amplitude, t0 / T0_SCALE]``."""
    rng = np.random.default_rng(seed)
    t = np.arange(N_SAMPLES, dtype=np.float64)
    t0 = rng.uniform(*T0_RANGE, size=n)
    amp = np.exp(rng.uniform(np.log(AMP_RANGE[0]), np.log(AMP_RANGE[1]), size=n))
    baseline = rng.uniform(*BASELINE_RANGE, size=n)
    x = pulse_shape(t, t0, amp) + baseline[:, None]
    x += rng.normal(0.0, NOISE_SIGMA, size=x.shape)
    y = np.stack([amp, t0 / T0_SCALE], axis=1)
    return x[:, None, :].astype(np.float32), y.astype(np.float32)


def targets_to_physical(y: np.ndarray) -> np.ndarray:
    """Network outputs or targets ``(n, 2)`` -> ``[amplitude, t0 in samples]``."""
    y = np.asarray(y, dtype=np.float64)
    return np.stack([y[:, 0], y[:, 1] * T0_SCALE], axis=1)
