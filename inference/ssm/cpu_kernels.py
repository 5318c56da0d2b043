"""Numba kernels of the selective scan on a CPU: one channel per work item, states in a small buffer.

Why this shape: the scan is a first-order recurrence along L, so the only parallelism that is
free is across channels (b·d of them, hundreds to thousands). Each channel keeps its n-state
vector in an n-long buffer and walks L once, so forward memory is O(b·d·L) — the (b, d, L, n)
tensor a vectorised formulation would need (154 MB at VMamba stage 1) never exists.

B and C arrive transposed to (b, g, L, n) so the innermost loop runs over n on contiguous data,
which lets LLVM vectorise it (8 float32 lanes per AVX2/AVX-512 ymm register, two per step at
n = 16). ``exp`` is the dominant arithmetic and numba has no vector exp without Intel's SVML, so
float32 uses ``_exp32`` below: Cody-Waite range reduction plus a degree-7 polynomial (Cephes'
expf coefficients, ~1 ulp), with 2**k built from the exponent bits — plain arithmetic that
vectorises. Every constant and intermediate must stay float32: one int64 (``math.floor``) made
LLVM run the polynomial in float64 at half the width, and forward took 56 ms instead of 21 ms
(one thread, 768×16×3136). float64 (gradcheck) uses ``math.exp``; speed does not matter there.

``fastmath`` is a set without ``nnan``/``ninf`` on purpose: a NaN anywhere in a channel's input
must reach its output (the front door turns that into a clear error), and ``nnan`` would license
LLVM to drop it.

Backward recomputes each channel's states and exp factors into per-work-item (L, n) buffers,
runs the adjoint recurrence in reverse, then a forward pass for the gradients that are sums over
t. Its loops are short and each stores into one array, never into an array it also reads at
another row: numba cannot tell LLVM that arrays do not overlap, and a loop that needs more
runtime overlap checks than the vectoriser allows, or that writes row t+1 of the array it reads
at row t, runs scalar. Measured on one thread at 768×16×3136: fused loops 410 ms, split 110 ms
(forward 21 ms). dB and dC are sums over the channels of a group, so work items are
(batch, group, part): each writes its own slice of a partial buffer with a leading ``parts``
axis (summed afterwards), so no two threads ever write the same cell.
"""
from __future__ import annotations

import math
import types as pytypes

import numpy as np
from llvmlite import ir
from numba import njit, prange, types
from numba.extending import intrinsic, overload

FASTMATH = {"contract", "afn", "reassoc", "arcp", "nsz"}

_LOG2E = np.float32(1.4426950408889634)
_LN2_HI = np.float32(0.693359375)
_LN2_LO = np.float32(-2.12194440e-4)
_X_LO = np.float32(-87.33654)  # exp(_X_LO) is the smallest normal float32; below it, 0 is as good
_X_HI = np.float32(88.02969)  # keeps 2**k finite; exp overflows to ~1e38 instead of inf


@intrinsic
def _bits_to_f32(typingctx, bits):
    sig = types.float32(types.int32)

    def codegen(context, builder, signature, args):
        return builder.bitcast(args[0], ir.FloatType())

    return sig, codegen


def fexp(x):  # pragma: no cover - replaced by the overload inside jitted code
    return math.exp(x)


@overload(fexp, inline="always")
def _fexp_overload(x):
    if x == types.float32:

        def _exp32(x):
            if x < _X_LO:
                x = _X_LO
            if x > _X_HI:
                x = _X_HI
            # np.floor keeps float32 (math.floor returns an int64, which drags the whole
            # polynomial into float64 and halves the vector width).
            k = np.floor(x * _LOG2E + np.float32(0.5))
            r = x - k * _LN2_HI - k * _LN2_LO
            p = np.float32(1.9875691500e-4)
            p = p * r + np.float32(1.3981999507e-3)
            p = p * r + np.float32(8.3334519073e-3)
            p = p * r + np.float32(4.1665795894e-2)
            p = p * r + np.float32(1.6666665459e-1)
            p = p * r + np.float32(5.0000001201e-1)
            p = p * r * r + r + np.float32(1.0)
            scale = _bits_to_f32(np.int32((np.int32(k) + np.int32(127)) << np.int32(23)))
            return p * scale

        return _exp32
    return lambda x: math.exp(x)


def zero_of(x):  # pragma: no cover - replaced by the overload inside jitted code
    return 0.0


@overload(zero_of, inline="always")
def _zero_of_overload(x):
    """A zero of x's float type, so float32 accumulators do not silently widen to float64."""
    if x == types.float32:
        return lambda x: np.float32(0.0)
    return lambda x: 0.0


@intrinsic
def _f32_to_bits(typingctx, x):
    sig = types.int32(types.float32)

    def codegen(context, builder, signature, args):
        return builder.bitcast(args[0], ir.IntType(32))

    return sig, codegen


_FORWARD_CHUNKS = 512  # work items of scan_forward: enough to balance any thread count we run

_SQRT_HALF = np.float32(0.70710678118654752440)


def softplus(x):  # pragma: no cover - replaced by the overload inside jitted code
    return x if x > 20.0 else math.log1p(math.exp(x))


@overload(softplus, inline="always")
def _softplus_overload(x):
    """torch's softplus (beta 1, threshold 20) in x's float type.

    float32 is plain arithmetic so that a loop over t vectorises (a scalar ``math.log1p`` per step
    made the fused kernel 3x slower than torch's softplus plus the unfused kernel):
    softplus(x) = max(x, 0) + log1p(e), e = exp(-|x|) in (0, 1]; log(1 + e) by Cephes' logf
    (mantissa in [sqrt(1/2), sqrt(2)), degree-8 polynomial, ~1 ulp), times e / ((1 + e) - 1)
    so that a tiny e keeps its full precision (Goldberg's log1p).
    """
    if x == types.float32:

        def _softplus32(x):
            e = fexp(-abs(x))
            v = np.float32(1.0) + e
            bits = _f32_to_bits(v)
            k = np.float32((bits >> np.int32(23)) - np.int32(126))
            m = _bits_to_f32((bits & np.int32(0x007FFFFF)) | np.int32(0x3F000000))  # in [0.5, 1)
            if m < _SQRT_HALF:
                k = k - np.float32(1.0)
                m = m + m - np.float32(1.0)
            else:
                m = m - np.float32(1.0)
            z = m * m
            p = np.float32(7.0376836292e-2)
            p = p * m - np.float32(1.1514610310e-1)
            p = p * m + np.float32(1.1676998740e-1)
            p = p * m - np.float32(1.2420140846e-1)
            p = p * m + np.float32(1.4249322787e-1)
            p = p * m - np.float32(1.6668057665e-1)
            p = p * m + np.float32(2.0000714765e-1)
            p = p * m - np.float32(2.4999993993e-1)
            p = p * m + np.float32(3.3333331174e-1)
            y = p * m * z + k * _LN2_LO - np.float32(0.5) * z
            logv = m + y + k * _LN2_HI
            d = v - np.float32(1.0)
            lp = e if d == np.float32(0.0) else logv * (e / d)
            out = (x if x > np.float32(0.0) else np.float32(0.0)) + lp
            return x if x > np.float32(20.0) else out

        return _softplus32
    return lambda x: x if x > 20.0 else math.log1p(math.exp(x))


@njit(parallel=True, fastmath=FASTMATH, cache=True, nogil=True)
def scan_forward(u, delta, A, Bt, Ct, y, delta_bias, D, delta_softplus):
    """y[b, d, t] = <C_t, h_t> (+ D[d] u_t), h_t = exp(delta_t A) h_{t-1} + delta_t u_t B_t. Bt, Ct: (b, g, L, n).

    ``delta_bias`` and ``D`` are (d,) or empty (absent). With them and ``delta_softplus`` the
    kernel does the whole inference scan: delta's bias and softplus and the D skip in torch were
    three more passes over (b, d, L), together as slow as the recurrence itself (issue 21).
    """
    nb, nd, L = u.shape
    n = A.shape[1]
    dpg = nd // Bt.shape[1]
    biased = delta_bias.shape[0] > 0
    skip = D.shape[0] > 0
    total = nb * nd
    chunks = min(total, _FORWARD_CHUNKS)
    for chunk in prange(chunks):
        # buffers per chunk of channels, not per channel: SS2D's inner scans have ~30k channels
        # of L = 16, where two small allocations per channel cost as much as the recurrence
        h = np.empty(n, dtype=u.dtype)
        dts = np.empty(L, dtype=u.dtype)  # one channel's delta after bias and softplus
        for idx in range((chunk * total) // chunks, ((chunk + 1) * total) // chunks):
            bi = idx // nd
            di = idx % nd
            gi = di // dpg
            a = A[di]
            h[:] = 0
            bias = delta_bias[di] if biased else zero_of(a[0])
            for t in range(L):
                dts[t] = delta[bi, di, t] + bias
            if delta_softplus:
                for t in range(L):
                    dts[t] = softplus(dts[t])
            for t in range(L):
                dt = dts[t]
                dtu = dt * u[bi, di, t]
                Bv = Bt[bi, gi, t]
                Cv = Ct[bi, gi, t]
                acc = zero_of(dt)
                for k in range(n):
                    hk = fexp(dt * a[k]) * h[k] + dtu * Bv[k]
                    h[k] = hk
                    acc += hk * Cv[k]
                if skip:
                    acc += D[di] * u[bi, di, t]
                y[bi, di, t] = acc


def _renamed(fn, name: str):
    """A copy of the plain Python function ``fn`` under another name. Why: numba's on-disk cache names
    its files after the function's qualified name and first line, and does not tell a serial
    compilation from a parallel one, so a second compilation of the same function would read the
    first one's machine code back."""
    copy = pytypes.FunctionType(fn.__code__, fn.__globals__, name, fn.__defaults__, fn.__closure__)
    copy.__qualname__ = name
    copy.__doc__ = fn.__doc__
    return copy


# The same forward kernel compiled without a parallel region (``prange`` runs as ``range``). Why:
# a numba parallel region must not be entered from two Python threads at once, so calls to
# ``scan_forward`` are serialised by a lock; the engine's lanes (ADR 0041) each run on one thread
# and would wait for each other there. This one takes no lock and runs on its caller's thread.
scan_forward_serial = njit(parallel=False, fastmath=FASTMATH, cache=True, nogil=True)(
    _renamed(scan_forward.py_func, "scan_forward_serial"))


@njit(parallel=True, fastmath=FASTMATH, cache=True, nogil=True)
def scan_backward(u, delta, A, Bt, Ct, dy, du, ddelta, dA_part, dB_part, dC_part):
    """Adjoint of ``scan_forward``.

    Writes du, ddelta (b, d, L) and per-batch dA_part (b, d, n); adds into the zero-initialised
    dB_part, dC_part (parts, b, g, L, n), whose ``parts`` axis the caller sums.
    """
    nb, nd, L = u.shape
    n = A.shape[1]
    ng = Bt.shape[1]
    dpg = nd // ng
    parts = dB_part.shape[0]
    for unit in prange(nb * ng * parts):
        p = unit % parts
        gi = (unit // parts) % ng
        bi = unit // (parts * ng)
        c0 = gi * dpg + (p * dpg) // parts
        c1 = gi * dpg + ((p + 1) * dpg) // parts
        hs = np.zeros((L + 1, n), dtype=u.dtype)  # hs[t + 1] = h_t; hs[0] = h_{-1} = 0
        es = np.zeros((L + 1, n), dtype=u.dtype)  # es[t] = exp(delta_t A); es[L] = 0
        gs = np.zeros((L + 1, n), dtype=u.dtype)  # gs[t] = dL/dh_t; gs[L] = 0
        dAacc = np.empty(n, dtype=u.dtype)
        h = np.empty(n, dtype=u.dtype)
        dBp = dB_part[p, bi, gi]
        dCp = dC_part[p, bi, gi]
        for di in range(c0, c1):
            a = A[di]
            h[:] = 0
            for t in range(L):
                dt = delta[bi, di, t]
                et = es[t]
                for k in range(n):
                    et[k] = fexp(dt * a[k])
                dtu = dt * u[bi, di, t]
                Bv = Bt[bi, gi, t]
                for k in range(n):
                    h[k] = et[k] * h[k] + dtu * Bv[k]
                ht = hs[t + 1]
                for k in range(n):
                    ht[k] = h[k]
            for t in range(L - 1, -1, -1):
                dyt = dy[bi, di, t]
                Bv = Bt[bi, gi, t]
                Cv = Ct[bi, gi, t]
                sB = zero_of(dyt)
                for k in range(n):
                    gk = gs[t + 1, k] * es[t + 1, k] + dyt * Cv[k]
                    gs[t, k] = gk
                    sB += gk * Bv[k]
                du[bi, di, t] = sB
            dAacc[:] = 0
            for t in range(L):
                dt = delta[bi, di, t]
                ut = u[bi, di, t]
                dyt = dy[bi, di, t]
                sA = zero_of(dt)
                for k in range(n):
                    q = gs[t, k] * hs[t, k] * es[t, k]
                    sA += q * a[k]
                    dAacc[k] += q * dt
                sB = du[bi, di, t]
                du[bi, di, t] = sB * dt
                ddelta[bi, di, t] = sB * ut + sA
                dtu = dt * ut
                for k in range(n):
                    dBp[t, k] += gs[t, k] * dtu
                for k in range(n):
                    dCp[t, k] += dyt * hs[t + 1, k]
            for k in range(n):
                dA_part[bi, di, k] = dAacc[k]
