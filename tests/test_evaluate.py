import pytest
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


def test_wilson_interval_matches_known_values():
    from vmcli.evaluation import wilson_interval

    lo, hi = wilson_interval(81, 100)
    assert (round(lo, 4), round(hi, 4)) == (0.7222, 0.8749)
    z2 = 1.959964**2
    assert wilson_interval(0, 10) == pytest.approx((0.0, z2 / (10 + z2)))  # not zero-width at 0
    assert wilson_interval(10, 10) == pytest.approx((10 / (10 + z2), 1.0))
    assert wilson_interval(0, 0) == (0.0, 1.0)


def test_paired_difference_math_and_verdicts():
    from vmcli.evaluation import paired_difference

    t = torch.tensor
    tie = paired_difference(t([1, 1, 0, 0]).bool(), t([0, 1, 0, 1]).bool())
    # one pair won, one lost, n 4: half a sample added to each cell, (1.5 − 1.5) / 6 ± z·se
    half = 1.959964 * 3**0.5 / 6
    assert tie["difference"] == 0 and tie["ci95"] == pytest.approx([-half, half])
    assert tie["verdict"] == "within noise"
    ahead = paired_difference(torch.ones(50, dtype=torch.bool), torch.zeros(50, dtype=torch.bool))
    assert ahead["difference"] == 1 and ahead["verdict"] == "ahead"
    assert 0.85 < ahead["ci95"][0] < 0.95 and ahead["ci95"][1] == 1  # not zero-width
    behind = paired_difference(t([0] * 30 + [1] * 70).bool(), torch.ones(100, dtype=torch.bool))
    assert behind["difference"] == pytest.approx(-0.3) and behind["verdict"] == "behind"
    assert behind["ci95"][0] < -0.3 < behind["ci95"][1] < 0
    for n in (1, 2):  # every pair won, but too few to say so
        few = paired_difference(torch.ones(n, dtype=torch.bool), torch.zeros(n, dtype=torch.bool))
        assert few["difference"] == 1 and few["verdict"] == "within noise"
        assert few["ci95"][0] < 0 and few["ci95"][1] == 1
    # 4 of 200 samples differ, all one way: an exact (McNemar) test gives p = 0.125, not < 0.05
    four = paired_difference(t([1] * 4 + [0] * 196).bool(), torch.zeros(200, dtype=torch.bool))
    assert four["difference"] == pytest.approx(0.02) and four["verdict"] == "within noise"
    none = paired_difference(t([]).bool(), t([]).bool())
    assert none["ci95"] == [-1.0, 1.0] and none["verdict"] == "within noise"


def test_probes_report_per_sample_correctness_consistent_with_accuracy():
    from vmcli.evaluation import knn_correct

    x, y = blobs(sep=1.0)  # overlapping classes: some mistakes
    xt, yt = blobs(seed=1, sep=1.0)
    out = linear_probe(x, y, xt, yt)
    assert out["correct"].dtype == torch.bool and out["correct"].shape == yt.shape
    assert out["accuracy"] == out["correct"].double().mean().item() < 1
    c = knn_correct(x, y, xt, yt, k=5)
    assert c.shape == yt.shape and c.double().mean().item() == knn_accuracy(x, y, xt, yt, k=5)


def test_windows_of_one_recording_never_straddle_the_split():
    """Long recordings cut into windows: a stratified split of windows put 75 %-overlapping
    neighbours of each test window into training (a probe scored 1.0 on labels that carried
    nothing but the recording). Whole recordings go to one side; files without windows keep
    the sample split they always had."""
    from pathlib import Path

    from vmcli.data.base import Item
    from vmcli.evaluation import _eval_split, recording_groups

    items = [
        Item(Path(f"k{c}/{r}.csv"), label=f"k{c}", offset=10 * w)
        for c in range(2)
        for r in range(10)
        for w in range(9)
    ]
    train, test, desc = _eval_split(items, seed=0, groups=recording_groups(items))
    assert {str(items[i].path) for i in train}.isdisjoint({str(items[i].path) for i in test})
    assert len(test) == 2 * 2 * 9  # 2 of each class's 10 recordings, every window of them
    assert "by recording" in desc and "test 36 of 4" in desc
    two = [it for it in items if it.path.stem in ("0", "1")]  # 2 recordings a class
    train, test, desc = _eval_split(two, seed=0, groups=recording_groups(two))
    assert len(test) == 2 * 9 and len(train) == 2 * 9  # one of each class's two held out
    assert {str(two[i].path) for i in train}.isdisjoint({str(two[i].path) for i in test})
    plain = [Item(Path(f"k{c}/{i}.png"), label=f"k{c}") for c in range(2) for i in range(10)]
    train, test, desc = _eval_split(plain, seed=0, groups=recording_groups(plain))
    keep, held = _stratified_holdout(torch.tensor([i // 10 for i in range(20)]), 0.2, seed=0)
    assert (train, test) == (keep.tolist(), held.tolist()) and "by recording" not in desc


def test_group_by_names_the_recording_of_windows_saved_one_per_file():
    """Windows saved as separate files were independent samples to vm eval (the bundled
    watch data: 28 test windows of 7 recordings); `--group-by` names their recording."""
    from pathlib import Path

    from vmcli.data.base import Item
    from vmcli.errors import ConfigError
    from vmcli.evaluation import _eval_split, check_group_by, recording_groups

    items = [
        Item(Path(f"k{c}/s{c}_r{r}_w{w:03d}.csv"), label=f"k{c}")
        for c in range(2)
        for r in range(10)
        for w in range(4)
    ]
    assert recording_groups(items) is None  # one sample per file: nothing to go by
    groups = recording_groups(items, r"(s\d+_r\d+)_w")
    assert len(torch.unique(groups)) == 20
    assert torch.equal(groups, recording_groups(items, r"s\d+_r\d+"))  # whole match, no group
    train, test, desc = _eval_split(items, seed=0, groups=groups)
    assert "by recording" in desc and len(test) == 2 * 2 * 4
    recs = lambda idx: {items[i].path.name[:5] for i in idx}  # noqa: E731
    assert recs(train).isdisjoint(recs(test))
    # a path the pattern does not match is its own recording
    odd = items + [Item(Path("k0/other.csv"), label="k0")]
    assert len(torch.unique(recording_groups(odd, r"(s\d+_r\d+)_w"))) == 21
    # so is a path where an optional group took no part (they were all one recording)
    loose = [Item(Path(f"k0/{n}_w1.csv"), label="k0") for n in ("x", "y", "s1_r1", "s1_r1")]
    assert recording_groups(loose, r"(s\d+_r\d+)?_w").tolist() == [0, 1, 2, 2]
    with pytest.raises(ConfigError, match=r"--group-by '\(s' is not a regular expression"):
        check_group_by("(s")


def test_intervals_count_windows_of_one_recording_as_what_they_are_worth():
    from vmcli.evaluation import accuracy_interval, effective_samples, paired_difference

    groups = torch.arange(6).repeat_interleave(9)  # 6 recordings × 9 windows
    alike = torch.tensor([1.0, 0, 1, 1, 0, 1]).repeat_interleave(9)  # windows agree
    assert effective_samples(alike, None) == 54
    assert effective_samples(alike, groups) == pytest.approx(5.0)  # g − 1 (small-g correction)
    mixed = torch.tensor([1.0, 0] * 27)  # each recording half right: nothing clustered
    assert effective_samples(mixed, torch.arange(27).repeat_interleave(2)) == 54
    assert effective_samples(torch.ones(54), groups) == 6.0  # cannot be told: one per group
    narrow, wide = accuracy_interval(alike.bool()), accuracy_interval(alike.bool(), groups)
    assert wide[0] < narrow[0] and wide[1] > narrow[1]
    ones, zeros = torch.ones(54, dtype=torch.bool), torch.zeros(54, dtype=torch.bool)
    assert paired_difference(ones, zeros)["verdict"] == "ahead"
    few = paired_difference(alike.bool(), zeros, groups)  # 4 recordings of 6 right
    assert few["difference"] == pytest.approx(4 / 6)
    assert few["ci95"][0] < paired_difference(alike.bool(), zeros)["ci95"][0]
