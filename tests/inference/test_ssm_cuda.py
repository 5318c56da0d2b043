"""GPU paths: mamba-ssm's fused kernel and the torch scan on CUDA tensors, against the reference.

Skipped, with the reason, wherever no CUDA GPU is present or mamba_ssm does not import.
"""
from __future__ import annotations

import pytest
import torch

from inference.ssm import default_backend, selective_scan
from inference.ssm import scan as scan_module
from inference.ssm.cuda_scan import cuda_unavailable_reason

from .test_ssm_scan import make_inputs, rel_err

needs_gpu = pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA GPU")
needs_kernel = pytest.mark.skipif(cuda_unavailable_reason() is not None, reason=str(cuda_unavailable_reason()))


def test_default_backend_per_device(monkeypatch):
    assert default_backend("cpu") == "numba"
    monkeypatch.setattr(scan_module, "cuda_unavailable_reason", lambda: None)
    assert default_backend("cuda") == "cuda"
    monkeypatch.setattr(scan_module, "cuda_unavailable_reason", lambda: "mamba_ssm does not import")
    assert default_backend("cuda") == "torch"
    assert default_backend("meta") == "torch"


def test_cuda_backend_refuses_cpu_tensors():
    x = make_inputs(1, 4, 4, 5)
    with pytest.raises(ValueError, match="cuda"):
        selective_scan(x["u"], x["delta"], x["A"], x["B"], x["C"], backend="cuda")


def _run_on_gpu(backend, groups, dtype):
    x = make_inputs(2, 8, 16, 301, groups)
    kw = dict(D=x["D"], z=x["z"], delta_bias=x["delta_bias"], delta_softplus=True)
    names = ("u", "delta", "A", "B", "C")
    ref = selective_scan(*[x[k].double() for k in names], **{k: v.double() if torch.is_tensor(v) else v for k, v in kw.items()}, backend="reference")
    gpu_in = [x[k].cuda().to(dtype) if k != "A" else x[k].cuda() for k in names]
    out = selective_scan(*gpu_in, **{k: v.cuda() if torch.is_tensor(v) else v for k, v in kw.items()}, backend=backend)
    return out, ref


@needs_kernel
@pytest.mark.parametrize("groups", [None, 4])
def test_mamba_ssm_kernel_matches_reference(groups):
    out, ref = _run_on_gpu("cuda", groups, torch.float32)
    assert out.is_cuda and rel_err(out.cpu(), ref) < 1e-4


@needs_gpu
@pytest.mark.parametrize("groups", [None, 4])
def test_torch_backend_on_gpu_matches_reference(groups):
    out, ref = _run_on_gpu("torch", groups, torch.float32)
    assert out.is_cuda and rel_err(out.cpu(), ref) < 1e-5
