"""exp, expm1 and log for loops that LLVM vectorizes.

Numba calls libm for `math.exp` and `math.log`, one element at a time: a loop over patients
that evaluates exponentials then runs at scalar speed (about 7 ns an exp here), while the same
loop written with the branch-free functions below compiles to AVX-512 (or AVX2) code at about
1 ns an exp. They follow the classic fdlibm reductions (Cody-Waite for exp, e_log.c's for
log), with the exponent handled by reinterpreting bits, which Numba has no operator for, so
two one-instruction intrinsics do it.

Accuracy (tests/pharmacology/test_pk_vecmath.py): within 2 ulp of libm over the whole range
(expm1: for x <= 0, the engine's exponents; 4 ulp above 0.7).
Results that would be subnormal are flushed to zero (exp of x < -708.39 is 0.0 instead of a
number below 2.3e-308), exp of x > 709 is inf (the engine's exponents are never positive), and
`log_lane` expects a positive normal finite argument.
"""

from __future__ import annotations

import math
import struct

from llvmlite import ir
from numba import config, njit, types
from numba.extending import intrinsic


@intrinsic
def _int_bits_as_float(typingctx, bits):
    """The float64 whose IEEE 754 bits are the int64 `bits`."""
    if bits != types.int64:
        return None

    def codegen(context, builder, sig, args):
        return builder.bitcast(args[0], ir.DoubleType())

    return types.float64(types.int64), codegen


@intrinsic
def _float_bits_as_int(typingctx, x):
    """The IEEE 754 bits of the float64 `x`, as an int64."""
    if x != types.float64:
        return None

    def codegen(context, builder, sig, args):
        return builder.bitcast(args[0], ir.IntType(64))

    return types.int64(types.float64), codegen


if config.DISABLE_JIT:  # intrinsics exist only in compiled code; the same in plain Python

    def _int_bits_as_float(bits):
        return struct.unpack("<d", struct.pack("<q", bits))[0]

    def _float_bits_as_int(x):
        return struct.unpack("<q", struct.pack("<d", x))[0]


LOG2E = 1.4426950408889634
# ln 2 split as in fdlibm: the high part has 32 significant bits, so k * LN2_HI is exact
LN2_HI = 6.93147180369123816490e-01
LN2_LO = 1.90821492927058770002e-10
EXP_MIN = -708.3964185322641  # below: the result would be subnormal; flushed to 0
EXP_MAX = 709.0  # above: inf (true overflow is at 709.78; the engine's exponents are <= 0)
# 1 / k! for k = 0..17: exp's Taylor polynomial on |r| <= ln2 / 2 (to k = 13) leaves
# r^14 / 14! < 5e-18; expm1's on |x| < 0.7 (to k = 17) leaves x^17 / 17! < 1e-17 relative
_INV_FACTORIAL = tuple(1.0 / math.factorial(k) for k in range(18))
_EXPONENT_BIAS = 1023
_MANTISSA_BITS = 52
_MANTISSA_MASK = (1 << _MANTISSA_BITS) - 1
_ONE_BITS = _EXPONENT_BIAS << _MANTISSA_BITS
_EXPM1_SERIES_LIMIT = 0.7
SQRT2 = 1.4142135623730951
# fdlibm e_log.c: minimax coefficients of (log(1 + f) - 2 s) / s in s^2, s = f / (2 + f)
LG1 = 6.666666666666735130e-01
LG2 = 3.999999999940941908e-01
LG3 = 2.857142874366239149e-01
LG4 = 2.222219843214978396e-01
LG5 = 1.818357216161805012e-01
LG6 = 1.531383769920937332e-01
LG7 = 1.479819860511658591e-01


@njit(cache=True, inline="always", error_model="numpy")
def exp_lane(x):  # pragma: no cover - compiled
    """exp(x), branch-free: x = k ln2 + r with |r| <= ln2 / 2, exp(r) by its Taylor
    polynomial, times 2^k built from its bits."""
    xc = min(max(x, EXP_MIN), EXP_MAX)
    k = math.floor(xc * LOG2E + 0.5)
    r = (xc - k * LN2_HI) - k * LN2_LO
    c = _INV_FACTORIAL
    p = c[13]
    p = p * r + c[12]
    p = p * r + c[11]
    p = p * r + c[10]
    p = p * r + c[9]
    p = p * r + c[8]
    p = p * r + c[7]
    p = p * r + c[6]
    p = p * r + c[5]
    p = p * r + c[4]
    p = p * r + c[3]
    p = p * r + c[2]
    p = p * r + 1.0
    p = p * r + 1.0
    y = p * _int_bits_as_float((int(k) + _EXPONENT_BIAS) << _MANTISSA_BITS)
    y = 0.0 if x < EXP_MIN else y
    y = math.inf if x > EXP_MAX else y
    return y if x == x else x  # NaN stays NaN


@njit(cache=True, inline="always", error_model="numpy")
def expm1_lane(x):  # pragma: no cover - compiled
    """exp(x) - 1 without the cancellation near 0, branch-free: its Taylor series for
    |x| < 0.7, else exp_lane(x) - 1 (exact subtraction for exp(x) in [0.5, 2], Sterbenz)."""
    near = abs(x) < _EXPM1_SERIES_LIMIT
    xs = x if near else 0.0  # the series' argument, kept small where it is not used
    c = _INV_FACTORIAL
    p = c[17]
    p = p * xs + c[16]
    p = p * xs + c[15]
    p = p * xs + c[14]
    p = p * xs + c[13]
    p = p * xs + c[12]
    p = p * xs + c[11]
    p = p * xs + c[10]
    p = p * xs + c[9]
    p = p * xs + c[8]
    p = p * xs + c[7]
    p = p * xs + c[6]
    p = p * xs + c[5]
    p = p * xs + c[4]
    p = p * xs + c[3]
    p = p * xs + c[2]
    p = p * xs + 1.0
    far = exp_lane(x) - 1.0
    return xs * p if near else far


@njit(cache=True, inline="always", error_model="numpy")
def log_lane(x):  # pragma: no cover - compiled
    """log(x) for a positive normal finite x, branch-free: x = 2^k m with m in
    [sqrt(1/2), sqrt(2)), log(m) = log(1 + f) by fdlibm's rational reduction."""
    bits = _float_bits_as_int(x)
    k = (bits >> _MANTISSA_BITS) - _EXPONENT_BIAS
    m = _int_bits_as_float((bits & _MANTISSA_MASK) | _ONE_BITS)  # in [1, 2)
    high = m > SQRT2
    m = 0.5 * m if high else m
    dk = float(k + 1) if high else float(k)
    f = m - 1.0  # exact: m is within a factor 2 of 1
    s = f / (2.0 + f)
    z = s * s
    w = z * z
    r = z * (LG1 + w * (LG3 + w * (LG5 + w * LG7))) + w * (LG2 + w * (LG4 + w * LG6))
    hfsq = 0.5 * f * f
    return dk * LN2_HI - ((hfsq - (s * (hfsq + r) + dk * LN2_LO)) - f)
