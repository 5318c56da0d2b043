"""Selective-scan backends against the step-by-step reference: values, gradients, bad input."""
from __future__ import annotations

import logging

import pytest
import torch

from inference.ssm import active_backend, selective_scan
from inference.ssm.scan import _LOGGED

CPU_BACKENDS = ["numba", "torch"]


def make_inputs(b, d, n, L, groups=None, dtype=torch.float32, seed=0, delta_scale=1.0):
    g = torch.Generator().manual_seed(seed)
    bc_shape = (b, n, L) if groups is None else (b, groups, n, L)
    return dict(
        u=torch.randn(b, d, L, generator=g, dtype=dtype),
        delta=torch.randn(b, d, L, generator=g, dtype=dtype) * delta_scale,
        A=-torch.rand(d, n, generator=g, dtype=dtype) * 2 - 0.1,
        B=torch.randn(*bc_shape, generator=g, dtype=dtype),
        C=torch.randn(*bc_shape, generator=g, dtype=dtype),
        D=torch.randn(d, generator=g, dtype=dtype),
        z=torch.randn(b, d, L, generator=g, dtype=dtype),
        delta_bias=torch.randn(d, generator=g, dtype=dtype) * 0.5,
    )


def rel_err(a: torch.Tensor, ref: torch.Tensor) -> float:
    return ((a.double() - ref.double()).abs().max() / ref.double().abs().max().clamp_min(1e-30)).item()


CASES = [
    # (b, d, n, L, groups, use_D, use_z, use_bias)
    (2, 8, 16, 37, None, True, True, True),
    (1, 4, 4, 1, None, False, False, False),
    (2, 6, 3, 50, 2, True, False, True),
    (1, 12, 16, 33, 4, False, True, False),
    (3, 4, 5, 17, 4, True, True, False),
]


@pytest.mark.parametrize("backend", CPU_BACKENDS)
@pytest.mark.parametrize("case", CASES)
@pytest.mark.parametrize("softplus", [True, False])
def test_forward_matches_reference(backend, case, softplus):
    b, d, n, L, groups, use_D, use_z, use_bias = case
    x = make_inputs(b, d, n, L, groups)
    if not softplus:
        x["delta"] = x["delta"].abs()  # without softplus a negative delta would grow the state
    kw = dict(D=x["D"] if use_D else None, z=x["z"] if use_z else None,
              delta_bias=x["delta_bias"].abs() if use_bias else None, delta_softplus=softplus)
    args = [x[k] for k in ("u", "delta", "A", "B", "C")]
    ref = selective_scan(*[a.double() for a in args], **{k: (v.double() if torch.is_tensor(v) else v) for k, v in kw.items()}, backend="reference")
    out = selective_scan(*args, **kw, backend=backend)
    assert out.dtype == torch.float32 and out.shape == (b, d, L)
    assert rel_err(out, ref) < 1e-5


@pytest.mark.parametrize("backend", CPU_BACKENDS)
def test_long_sequence_and_large_delta_stay_exact(backend):
    """Large delta drives exp(delta*A) to underflow; nothing may overflow or turn NaN."""
    x = make_inputs(1, 4, 8, 3000, groups=2, delta_scale=30.0)
    x["A"] = x["A"] * 20
    args = [x[k] for k in ("u", "delta", "A", "B", "C")]
    ref = selective_scan(*[a.double() for a in args], delta_softplus=True, backend="reference")
    out = selective_scan(*args, delta_softplus=True, backend=backend)
    assert torch.isfinite(out).all()
    assert rel_err(out, ref) < 1e-5


@pytest.mark.parametrize("backend", CPU_BACKENDS)
def test_half_precision_is_upcast(backend):
    x = make_inputs(1, 4, 4, 9)
    args = [x[k].to(torch.bfloat16) for k in ("u", "delta", "A", "B", "C")]
    out = selective_scan(*args, delta_softplus=True, backend=backend)
    ref = selective_scan(*[a.double() for a in args], delta_softplus=True, backend="reference")
    assert out.dtype == torch.bfloat16
    assert rel_err(out, ref) < 1e-2


@pytest.mark.parametrize("backend", CPU_BACKENDS)
@pytest.mark.parametrize("groups", [None, 2])
def test_gradcheck_float64(backend, groups):
    x = make_inputs(2, 4, 2, 5, groups, dtype=torch.float64)
    names = ["u", "delta", "A", "B", "C", "D", "z", "delta_bias"]
    inputs = [x[k].clone().requires_grad_(True) for k in names]

    def fn(u, delta, A, B, C, D, z, delta_bias):
        return selective_scan(u, delta, A, B, C, D=D, z=z, delta_bias=delta_bias, delta_softplus=True, backend=backend)

    assert torch.autograd.gradcheck(fn, inputs, eps=1e-6, atol=1e-6, rtol=1e-5)


@pytest.mark.parametrize("backend", CPU_BACKENDS)
def test_float32_gradients_match_reference(backend):
    x = make_inputs(2, 8, 16, 40, groups=4)
    names = ["u", "delta", "A", "B", "C", "D", "z", "delta_bias"]

    def grads(dtype, backend_name):
        ins = [x[k].detach().to(dtype).clone().requires_grad_(True) for k in names]
        y = selective_scan(*ins[:5], D=ins[5], z=ins[6], delta_bias=ins[7], delta_softplus=True, backend=backend_name)
        w = torch.linspace(-1, 1, y.numel(), dtype=dtype).view_as(y)
        (y * w).sum().backward()
        return [i.grad for i in ins]

    for name, g, r in zip(names, grads(torch.float32, backend), grads(torch.float64, "reference")):
        assert rel_err(g, r) < 1e-4, name


@pytest.mark.parametrize("backend", CPU_BACKENDS)
@pytest.mark.parametrize("where", ["u", "delta", "B", "C", "z", "A"])
def test_nan_input_raises(backend, where):
    x = make_inputs(1, 4, 4, 11, groups=2)
    x[where] = x[where].clone()
    x[where].view(-1)[5] = float("nan")
    with pytest.raises(ValueError, match=f"non-finite.*{where}"):
        selective_scan(x["u"], x["delta"], x["A"], x["B"], x["C"], z=x["z"], delta_softplus=True, backend=backend)


@pytest.mark.parametrize(
    "change, message",
    [
        (dict(delta=torch.zeros(1, 4, 10)), "delta"),
        (dict(A=torch.zeros(5, 4)), "A must be"),
        (dict(B=torch.zeros(1, 3, 4, 11)), "do not split into 3 groups"),
        (dict(C=torch.zeros(1, 4, 12)), "C must be"),
        (dict(u=torch.zeros(4, 11)), "u must be"),
        (dict(D=torch.zeros(3)), "D must be"),
        (dict(z=torch.zeros(1, 4, 3)), "z"),
    ],
)
def test_bad_shapes_raise_clear_errors(change, message):
    x = make_inputs(1, 4, 4, 11)
    x.pop("delta_bias")
    x.update(change)
    with pytest.raises(ValueError, match=message):
        selective_scan(**x)


def test_unknown_backend_raises():
    x = make_inputs(1, 4, 4, 3)
    with pytest.raises(ValueError, match="unknown backend"):
        selective_scan(x["u"], x["delta"], x["A"], x["B"], x["C"], backend="nope")


def test_default_cpu_backend_is_fast_and_logged_once(caplog):
    _LOGGED.discard("cpu")
    with caplog.at_level(logging.INFO, logger="inference.ssm.scan"):
        assert active_backend("cpu") == "numba"
        assert active_backend(torch.device("cpu")) == "numba"
    assert sum("uses the 'numba' backend" in r.getMessage() for r in caplog.records) == 1


@pytest.mark.parametrize("case", CASES)
def test_inference_kernel_matches_reference_and_unfused_path(case):
    """Without gradients the numba backend runs bias, softplus and the D skip inside the kernel
    (issue 21); it must agree with the reference and with the path that does them in torch, also
    for deltas around softplus's threshold (20) and B/C passed as transposed views, as SS2D does."""
    from inference.ssm import speed

    b, d, n, L, groups, use_D, _, use_bias = case
    x = make_inputs(b, d, n, L, groups, delta_scale=12.0)
    x["delta"].view(-1)[:4] = torch.tensor([19.9, 20.0, 20.1, -40.0])[: x["delta"].numel()]
    B = x["B"].transpose(-1, -2).contiguous().transpose(-1, -2)  # (…, n, L) view of (…, L, n) rows
    kw = dict(D=x["D"] if use_D else None, delta_bias=x["delta_bias"] if use_bias else None, delta_softplus=True)
    args = [x["u"], x["delta"], x["A"], B, x["C"]]
    ref = selective_scan(*[a.double() for a in args], **{k: (v.double() if torch.is_tensor(v) else v) for k, v in kw.items()},
                         backend="reference")
    with torch.inference_mode():
        fused = selective_scan(*args, **kw, backend="numba")
        speed.set_enabled(False)
        try:
            unfused = selective_scan(*args, **kw, backend="numba")
        finally:
            speed.set_enabled(True)
    assert rel_err(fused, ref) < 1e-5
    assert rel_err(fused, unfused) < 1e-5


def test_kernel_softplus_matches_torch():
    """The vectorisable float32 softplus of the fused kernel, against torch's in float64."""
    import numpy as np
    from numba import njit

    from inference.ssm.cpu_kernels import softplus

    @njit
    def run(x, out):
        for i in range(x.shape[0]):
            out[i] = softplus(x[i])

    x = np.concatenate([np.linspace(-95, 95, 40001), [0.0, 1e-8, -1e-8, 19.99, 20.0, 20.01]]).astype(np.float32)
    out = np.empty_like(x)
    run(x, out)
    ref = torch.nn.functional.softplus(torch.from_numpy(x).double()).numpy()
    assert (np.abs(out - ref) / np.maximum(ref, 1e-30)).max() < 1e-6
    nan = np.array([np.nan], np.float32)
    run(nan, nan)
    assert np.isnan(nan[0])  # a NaN must still reach the output (the front door reports it)


def test_thread_cap_survives_the_start_of_numbas_pool():
    """numba's OpenMP pool starts at its first set_num_threads and resets the OpenMP runtime that
    torch shares to NUMBA_NUM_THREADS: ``set_threads(1)`` left torch on 2 threads (issue 21).
    A fresh process, since the pool starts once per process."""
    import os
    import subprocess
    import sys

    code = ("import numba, torch\n"
            "from inference.training.common import set_threads\n"
            "torch.get_num_threads()\n"  # torch's OpenMP state in use, as after loading a model
            "set_threads(1)\n"
            "print(torch.get_num_threads(), numba.get_num_threads())\n")
    env = {**os.environ, "NUMBA_NUM_THREADS": "2", "OMP_NUM_THREADS": "2"}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["1", "1"]


def test_serial_kernel_equals_the_parallel_one():
    """The lock-free serial compilation the engine's lanes use (ADR 0041) is the same function:
    it must give the parallel kernel's outputs, here with bias, softplus and the D skip."""
    import numpy as np

    from inference.ssm.cpu_kernels import scan_forward, scan_forward_serial

    rng = np.random.default_rng(3)
    b, d, n, L, g = 2, 12, 8, 37, 3
    u = rng.standard_normal((b, d, L)).astype(np.float32)
    delta = rng.standard_normal((b, d, L)).astype(np.float32)
    A = -np.exp(rng.standard_normal((d, n))).astype(np.float32)
    Bt = rng.standard_normal((b, g, L, n)).astype(np.float32)
    Ct = rng.standard_normal((b, g, L, n)).astype(np.float32)
    bias, D = rng.standard_normal(d).astype(np.float32), rng.standard_normal(d).astype(np.float32)
    y_par, y_ser = np.empty_like(u), np.empty_like(u)
    scan_forward(u, delta, A, Bt, Ct, y_par, bias, D, True)
    scan_forward_serial(u, delta, A, Bt, Ct, y_ser, bias, D, True)
    np.testing.assert_array_equal(y_ser, y_par)


def test_one_thread_inference_scan_takes_no_lock(monkeypatch):
    """On one thread the inference scan runs the serial kernel outside the lock, so two lanes never
    wait for each other there; with more threads it keeps the parallel kernel behind the lock."""
    from inference.ssm import cpu_scan

    calls: list[str] = []

    class Spy:
        def __enter__(self):
            calls.append("lock")

        def __exit__(self, *exc):
            return False

    monkeypatch.setattr(cpu_scan, "_KERNEL_LOCK", Spy())
    x = make_inputs(1, 64, 16, 2048, 1)
    kw = dict(D=x["D"], delta_bias=x["delta_bias"], delta_softplus=True)
    before = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        with torch.inference_mode():
            one = selective_scan(x["u"], x["delta"], x["A"], x["B"], x["C"], **kw, backend="numba")
        assert calls == []
        monkeypatch.setattr(cpu_scan, "_kernel_threads", lambda updates: 2)
        monkeypatch.setattr(cpu_scan.numba, "set_num_threads", lambda n: None)  # the pool may hold one thread here
        with torch.inference_mode():
            two = selective_scan(x["u"], x["delta"], x["A"], x["B"], x["C"], **kw, backend="numba")
        assert calls == ["lock"]
    finally:
        torch.set_num_threads(before)
    assert rel_err(one, two) < 1e-6
