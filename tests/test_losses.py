import math

import pytest
import torch
import torch.nn.functional as F

from vmcli.losses import nt_xent


def naive_nt_xent(z1, z2, tau):
    """Textbook SimCLR loss, one anchor at a time."""
    z = F.normalize(torch.cat([z1, z2]).double(), dim=1)
    n = z.shape[0]
    b = n // 2
    total = 0.0
    for i in range(n):
        j = (i + b) % n
        num = math.exp(float(z[i] @ z[j]) / tau)
        den = sum(math.exp(float(z[i] @ z[k]) / tau) for k in range(n) if k != i)
        total += -math.log(num / den)
    return total / n


@pytest.mark.parametrize("b,d,tau", [(2, 3, 0.5), (7, 16, 0.07), (16, 128, 0.2)])
def test_matches_naive_loop(b, d, tau):
    g = torch.Generator().manual_seed(b)
    z1, z2 = torch.randn(b, d, generator=g), torch.randn(b, d, generator=g)
    assert nt_xent(z1, z2, tau).item() == pytest.approx(naive_nt_xent(z1, z2, tau), rel=1e-5)


def test_closed_form_orthogonal_pairs():
    # each pair shares a basis vector, different pairs are orthogonal: positive sim 1, negatives 0
    b, tau = 4, 0.5
    z = torch.eye(b)
    expected = -math.log(math.exp(1 / tau) / (math.exp(1 / tau) + (2 * b - 2)))
    assert nt_xent(z, z.clone(), tau).item() == pytest.approx(expected, rel=1e-5)


def test_symmetric_and_scale_invariant():
    z1, z2 = torch.randn(6, 8), torch.randn(6, 8)
    assert nt_xent(z1, z2).item() == pytest.approx(nt_xent(z2, z1).item(), rel=1e-6)
    assert nt_xent(3 * z1, z2).item() == pytest.approx(nt_xent(z1, z2).item(), rel=1e-5)


def test_rejects_mismatched_shapes():
    with pytest.raises(ValueError):
        nt_xent(torch.randn(4, 8), torch.randn(5, 8))


def test_loss_is_float32_under_bf16_autocast():
    z1, z2 = torch.randn(8, 16), torch.randn(8, 16)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        loss = nt_xent(z1, z2)
    assert loss.dtype == torch.float32
    assert loss.item() == pytest.approx(nt_xent(z1, z2).item(), rel=1e-6)
