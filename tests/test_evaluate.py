import torch

from vmcli.evaluation import _stratified_holdout, knn_accuracy, linear_probe


def blobs(n_per_class=30, classes=3, dim=5, sep=4.0, seed=0, centers_seed=0):
    """Gaussian classes around fixed centres (`centers_seed`); `seed` draws the samples, so a
    different seed is a held-out test set from the same distribution."""
    centers = torch.randn(classes, dim, generator=torch.Generator().manual_seed(centers_seed))
    centers = centers * sep
    g = torch.Generator().manual_seed(1000 + seed)
    x = torch.cat([centers[c] + torch.randn(n_per_class, dim, generator=g) for c in range(classes)])
    y = torch.arange(classes).repeat_interleave(n_per_class)
    return x, y


def test_linear_probe_separates_blobs_and_fails_on_noise():
    x, y = blobs()
    xt, yt = blobs(seed=1)  # new samples, same classes
    assert not torch.equal(x, xt)
    assert linear_probe(x, y, xt, yt)["accuracy"] > 0.95
    g = torch.Generator().manual_seed(1)
    noise, noise_test = torch.randn(90, 5, generator=g), torch.randn(90, 5, generator=g)
    assert linear_probe(noise, y, noise_test, yt)["accuracy"] < 0.6


def test_knn_on_blobs():
    x, y = blobs()
    xt, yt = blobs(seed=1)
    assert knn_accuracy(x, y, xt, yt, k=5) > 0.95
    assert (
        knn_accuracy(
            x, y[torch.randperm(len(y), generator=torch.Generator().manual_seed(0))], xt, yt, k=5
        )
        < 0.6
    )  # shuffled labels: chance


def test_stratified_holdout_is_deterministic_and_stratified():
    y = torch.tensor([0] * 10 + [1] * 20)
    keep, held = _stratified_holdout(y, 0.2, seed=0)
    keep2, held2 = _stratified_holdout(y, 0.2, seed=0)
    assert torch.equal(held, held2) and torch.equal(keep, keep2)
    assert torch.bincount(y[held]).tolist() == [2, 4]
    assert len(set(keep.tolist()) & set(held.tolist())) == 0 and len(keep) + len(held) == 30
