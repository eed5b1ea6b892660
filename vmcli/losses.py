"""Contrastive loss: symmetric NT-Xent (SimCLR), optionally with negatives from every rank.

Where we depart from the reference code: it used an asymmetric variant (only view-1 anchors, the
self-similarity left in the denominator). We use the standard symmetric form: both views are
anchors and each embedding's similarity with itself is masked out.
"""

from __future__ import annotations

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import Tensor

from vmcli.distributed import all_gather_with_grad


def nt_xent(z1: Tensor, z2: Tensor, temperature: float = 0.07, gather: bool = False) -> Tensor:
    """Normalized-temperature cross entropy over 2B embeddings (B pairs).

    For anchor i its positive is the other view of the same example; the 2B − 2 other
    embeddings are negatives. Computed in float32. With `gather=True` (distributed training),
    negatives come from the global batch on every rank, with gradients; the loss then equals
    the single-process loss on the global batch.

    >>> z1, z2 = torch.randn(16, 128), torch.randn(16, 128)
    >>> loss = nt_xent(z1, z2)   # scalar; ≈ log(2B − 1) for unrelated embeddings
    """
    if z1.shape != z2.shape or z1.ndim != 2:
        raise ValueError(
            f"expected two B×D tensors of one shape, got {tuple(z1.shape)} and {tuple(z2.shape)}"
        )
    with torch.autocast(z1.device.type, enabled=False):  # the loss stays float32 under bf16
        return _nt_xent_fp32(z1.float(), z2.float(), temperature, gather)


def _nt_xent_fp32(z1: Tensor, z2: Tensor, temperature: float, gather: bool) -> Tensor:
    z1 = F.normalize(z1, dim=1)
    z2 = F.normalize(z2, dim=1)
    b = z1.shape[0]
    offset = 0
    if gather and dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1:
        offset = dist.get_rank() * b
        k1, k2 = all_gather_with_grad(z1), all_gather_with_grad(z2)
    else:
        k1, k2 = z1, z2
    n = k1.shape[0]  # global batch
    anchors = torch.cat([z1, z2], dim=0)  # 2b × D (local)
    keys = torch.cat([k1, k2], dim=0)  # 2n × D (global)
    logits = anchors @ keys.T / temperature  # 2b × 2n
    local = torch.arange(b, device=z1.device) + offset
    self_index = torch.cat([local, local + n])
    positive = torch.cat([local + n, local])
    rows = torch.arange(2 * b, device=z1.device)
    # a fill on the device, not torch.tensor(-inf): copying a host scalar to a GPU blocks the
    # host until everything queued before it has run, once per step
    minus_inf = torch.full((), float("-inf"), device=logits.device, dtype=logits.dtype)
    logits = logits.index_put((rows, self_index), minus_inf)
    return F.cross_entropy(logits, positive)
