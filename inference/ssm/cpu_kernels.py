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


@njit(parallel=True, fastmath=FASTMATH, cache=True, nogil=True)
def scan_forward(u, delta, A, Bt, Ct, y):
    """y[b, d, t] = <C_t, h_t>, h_t = exp(delta_t A) h_{t-1} + delta_t u_t B_t. Bt, Ct: (b, g, L, n)."""
    nb, nd, L = u.shape
    n = A.shape[1]
    dpg = nd // Bt.shape[1]
    for idx in prange(nb * nd):
        bi = idx // nd
        di = idx % nd
        gi = di // dpg
        a = A[di]
        h = np.zeros(n, dtype=u.dtype)
        for t in range(L):
            dt = delta[bi, di, t]
            dtu = dt * u[bi, di, t]
            Bv = Bt[bi, gi, t]
            Cv = Ct[bi, gi, t]
            acc = zero_of(dt)
            for k in range(n):
                hk = fexp(dt * a[k]) * h[k] + dtu * Bv[k]
                h[k] = hk
                acc += hk * Cv[k]
            y[bi, di, t] = acc


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
