"""How good is the representation? Linear probe and kNN on frozen features, with baselines.

Protocol (the standard one; the paper's reference also fed viewmaker-augmented inputs to the
probe, we do not): features are the encoder's pooled penultimate activations on clean inputs,
standardised with training statistics. The probe is a multinomial logistic regression fitted
to convergence with L-BFGS; its L2 strength is picked on a validation split held out from the
*training* split, never on the test split. kNN: cosine similarity, k = 20, votes weighted by
exp(similarity / 0.07).

Baselines on the same split: the same architecture with random initial weights, and a probe
on the raw inputs (plus modality-specific hand-made features where the modality has them).
"""

from __future__ import annotations

import hashlib
import re
import time
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

from vmcli import runs
from vmcli.config import TrainConfig, check_seed
from vmcli.console import first_few, info, warn
from vmcli.data import MODALITIES, TensorData, get_modality, scan
from vmcli.data.base import Item
from vmcli.devices import resolve_device
from vmcli.errors import ConfigError, DataError
from vmcli.pipeline import FeatureExtractor, build_encoder, load_encoder

L2_GRID = (1e-5, 1e-4, 1e-3, 1e-2)
Z95 = 1.959964  # two-sided 95 % normal quantile


# -- how sure a test accuracy is ---------------------------------------------------------------


def effective_samples(values: Tensor, groups: Tensor | None) -> float:
    """How many independent samples `values` (one per test sample) are worth when samples of
    one group (windows of one recording) are alike: N over the design effect, the cluster-
    robust variance of their mean against the independent one (Kish). Where every value is
    the same the design effect cannot be told, and each group counts as one sample."""
    n = len(values)
    if groups is None or n == 0:
        return float(n)
    _, inverse = torch.unique(groups, return_inverse=True)
    g = int(inverse.max()) + 1
    if g == n:
        return float(n)
    if g < 2:
        return 1.0
    v = values.double()
    dev = torch.zeros(g, dtype=torch.float64).index_add_(0, inverse, v - v.mean())
    clustered = g / (g - 1) * float((dev**2).sum()) / n**2
    independent = float(v.var(unbiased=False)) / n
    if independent <= 0:
        return float(g)
    if clustered <= 0:
        return float(n)
    return min(float(n), max(1.0, n * independent / clustered))


def accuracy_interval(correct: Tensor, groups: Tensor | None = None) -> tuple[float, float]:
    """`wilson_interval` of per-sample correctness, over its effective number of samples
    where test samples come in groups (windows of one recording are not independent)."""
    n, k = len(correct), float(correct.double().sum())
    if groups is None or n == 0:
        return wilson_interval(k, n)
    n_eff = effective_samples(correct, groups)
    return wilson_interval(k * n_eff / n, n_eff)


def wilson_interval(correct: float, n: float) -> tuple[float, float]:
    """95 % interval of an accuracy of `correct`/`n` test samples (Wilson's: unlike ±1.96·SE
    it stays inside [0, 1] and is not zero-width at 0 or 1). 200 test samples at 0.8 give
    about ±0.055: differences smaller than that between two rows are not established.
    Fractional counts are an effective number of samples (`accuracy_interval`)."""
    if n == 0:
        return (0.0, 1.0)
    p = correct / n
    z2 = Z95 * Z95
    centre = (p + z2 / (2 * n)) / (1 + z2 / n)
    half = Z95 * (p * (1 - p) / n + z2 / (4 * n * n)) ** 0.5 / (1 + z2 / n)
    return (max(0.0, centre - half), min(1.0, centre + half))


def paired_difference(a: Tensor, b: Tensor, groups: Tensor | None = None) -> dict[str, Any]:
    """Accuracy of `a` minus that of `b`, both per-sample correctness on the *same* test
    samples, with a 95 % interval. Pairing removes the test set's own difficulty, so this is
    much tighter than comparing two separate intervals. The interval is Agresti and Min's
    (half a sample added to each cell of the 2 × 2 table): the plain normal one is zero-width
    when every pair differs the same way, and called 2 of 2, or 4 of 4 among 200, "ahead".
    With `groups` (windows of one recording), the counts are scaled to the differences'
    effective number of samples. The verdict: "ahead" / "behind" where the interval excludes 0."""
    d = a.long() - b.long()
    n = len(d)
    if n == 0:
        return {"difference": 0.0, "ci95": [-1.0, 1.0], "verdict": "within noise"}
    scale = effective_samples(d, groups) / n
    won = float((d > 0).sum()) * scale + 0.5  # the discordant pairs
    lost = float((d < 0).sum()) * scale + 0.5
    m = n * scale + 2
    centre = (won - lost) / m
    se = ((won + lost) - (won - lost) ** 2 / m) ** 0.5 / m
    lo, hi = max(-1.0, centre - Z95 * se), min(1.0, centre + Z95 * se)
    verdict = "ahead" if lo > 0 else "behind" if hi < 0 else "within noise"
    return {"difference": d.double().mean().item(), "ci95": [lo, hi], "verdict": verdict}


# -- probes ------------------------------------------------------------------------------------


def _standardize(train: Tensor, *others: Tensor) -> list[Tensor]:
    mean, std = train.mean(0, keepdim=True), train.std(0, keepdim=True).clamp_min(1e-6)
    return [(t - mean) / std for t in (train, *others)]


def _fit_logreg(
    x: Tensor, y: Tensor, num_classes: int, l2: float, max_iter: int = 300
) -> tuple[Tensor, Tensor]:
    w = torch.zeros(x.shape[1], num_classes, dtype=x.dtype, device=x.device, requires_grad=True)
    b = torch.zeros(num_classes, dtype=x.dtype, device=x.device, requires_grad=True)
    opt = torch.optim.LBFGS(
        [w, b], lr=1, max_iter=max_iter, history_size=20, line_search_fn="strong_wolfe"
    )

    def closure() -> Tensor:
        opt.zero_grad()
        loss = F.cross_entropy(x @ w + b, y) + 0.5 * l2 * (w * w).sum()
        loss.backward()
        return loss

    opt.step(closure)
    return w.detach(), b.detach()


def _stratified_holdout(
    y: Tensor, fraction: float, seed: int, groups: Tensor | None = None
) -> tuple[Tensor, Tensor]:
    """Indices (keep, held out): `fraction` of every class held out, deterministically. With
    `groups` (windows cut from one recording share a group), whole groups are held out: a
    window whose neighbours, overlapping it, were trained on is not a test of anything."""
    g = torch.Generator().manual_seed(seed)
    grouped = groups is not None
    groups = torch.arange(len(y)) if groups is None else groups
    keep, held = [], []
    for c in torch.unique(y):
        idx = torch.nonzero(y == c).flatten()
        units = torch.unique(groups[idx])
        units = units[torch.randperm(len(units), generator=g)]
        k = int(round(len(units) * fraction)) if len(units) > 1 else 0
        if grouped and len(units) > 1:  # 2 recordings of a class: one each side, not none
            k = max(k, 1)
        out = torch.isin(groups[idx], units[:k])
        held.append(idx[out])
        keep.append(idx[~out])
    return torch.cat(keep).sort().values, torch.cat(held).sort().values


def recording_groups(items: list[Item], group_by: str | None = None) -> Tensor | None:
    """Each sample's recording as a group id: its source file, where some file gave several
    samples (a long sensor recording cut into windows), or with `group_by` (a regular
    expression) what it matches in the file's path — its first group if it has one — so that
    windows saved as separate files (`s03_r007_w001.csv`) count as the recording they are cut
    from; a path it does not match is its own group. None where every sample is its own."""
    keys = [str(it.path) for it in items]
    if group_by is not None:
        pattern = re.compile(group_by)
        found = [pattern.search(k) for k in keys]
        named = [(m.group(1) if m.re.groups else m.group(0)) if m else None for m in found]
        # unmatched, or an optional group left out: the file is its own recording
        keys = [f"\0{k}" if n is None else n for n, k in zip(named, keys, strict=True)]
    if len(set(keys)) == len(keys):
        return None
    ids = {k: i for i, k in enumerate(dict.fromkeys(keys))}
    return torch.tensor([ids[k] for k in keys])


def check_group_by(group_by: str | None) -> str | None:
    """`--group-by` compiles, before any data is read."""
    if group_by is None:
        return None
    try:
        re.compile(group_by)
    except re.error as e:
        raise ConfigError(f"--group-by {group_by!r} is not a regular expression ({e})") from None
    return group_by


class LinearProbe:
    """A fitted multinomial logistic regression on standardised features."""

    def __init__(self, mean: Tensor, std: Tensor, w: Tensor, b: Tensor, l2: float):
        self.mean, self.std, self.w, self.b, self.l2 = mean, std, w, b, l2

    def predict(self, x: Tensor) -> Tensor:
        x = (x.to(self.w.device, self.w.dtype) - self.mean) / self.std
        return (x @ self.w + self.b).argmax(1)

    def correct(self, x: Tensor, y: Tensor) -> Tensor:
        """Per-sample correctness (bool, on the CPU): what intervals and paired tests need."""
        return (self.predict(x) == y.to(self.w.device)).cpu()

    def accuracy(self, x: Tensor, y: Tensor) -> float:
        return self.correct(x, y).double().mean().item()


def fit_linear_probe(
    train_x: Tensor,
    train_y: Tensor,
    seed: int = 0,
    device: torch.device | str = "cpu",
    groups: Tensor | None = None,
) -> LinearProbe:
    """Fit the probe; its L2 strength is picked on a stratified 20 % held out of `train_x`
    (whole `groups`, recordings, where given). Float64 on the CPU, float32 on a GPU
    (standardised features keep that well conditioned)."""
    device = torch.device(device)
    dtype = torch.float64 if device.type == "cpu" else torch.float32
    x = train_x.to(device, dtype)
    y = train_y.to(device)
    mean, std = x.mean(0, keepdim=True), x.std(0, keepdim=True).clamp_min(1e-6)
    x = (x - mean) / std
    num_classes = int(y.max()) + 1
    l2 = L2_GRID[1]
    if len(y) >= 40:
        held = _stratified_holdout(y.cpu(), 0.2, seed, groups)
        fit_idx, val_idx = (i.to(device) for i in held)
    if len(y) >= 40 and len(val_idx) and len(fit_idx):  # else the default strength
        fx, vx = _standardize(x[fit_idx], x[val_idx])
        scores = []
        for lam in L2_GRID:
            w, b = _fit_logreg(fx, y[fit_idx], num_classes, lam, max_iter=150)
            scores.append(((vx @ w + b).argmax(1) == y[val_idx]).double().mean().item())
        l2 = L2_GRID[max(range(len(L2_GRID)), key=lambda i: (scores[i], -i))]
    w, b = _fit_logreg(x, y, num_classes, l2)
    return LinearProbe(mean, std, w, b, l2)


def linear_probe(
    train_x: Tensor,
    train_y: Tensor,
    test_x: Tensor,
    test_y: Tensor,
    seed: int = 0,
    device: torch.device | str = "cpu",
    groups: Tensor | None = None,
) -> dict[str, float]:
    """Test accuracy of a logistic-regression probe fitted on the training features
    (`groups`: the training samples' recordings, for the probe's own validation split)."""
    num_classes = int(max(train_y.max(), test_y.max())) + 1
    probe = fit_linear_probe(train_x, train_y, seed, device, groups)
    if probe.w.shape[1] < num_classes:  # a class only in the test split: never predicted
        pad = torch.zeros(
            probe.w.shape[0],
            num_classes - probe.w.shape[1],
            dtype=probe.w.dtype,
            device=probe.w.device,
        )
        probe.w = torch.cat([probe.w, pad], 1)
        probe.b = torch.cat([probe.b, torch.full_like(pad[0], -1e9)])
    correct = probe.correct(test_x, test_y)
    return {"accuracy": correct.double().mean().item(), "l2": probe.l2, "correct": correct}


def knn_accuracy(
    train_x: Tensor, train_y: Tensor, test_x: Tensor, test_y: Tensor, k: int = 20, tau: float = 0.07
) -> float:
    return knn_correct(train_x, train_y, test_x, test_y, k, tau).double().mean().item()


def knn_correct(
    train_x: Tensor, train_y: Tensor, test_x: Tensor, test_y: Tensor, k: int = 20, tau: float = 0.07
) -> Tensor:
    """Per-test-sample correctness (bool, CPU) of the weighted kNN vote."""
    device = train_x.device
    test_x = test_x.to(device)
    train_x, test_x = F.normalize(train_x.float(), dim=1), F.normalize(test_x.float(), dim=1)
    train_y, test_y = train_y.to(device), test_y.to(device)
    num_classes = int(max(train_y.max(), test_y.max())) + 1
    k = min(k, len(train_y))
    correct = []
    for start in range(0, len(test_y), 1024):
        sims = test_x[start : start + 1024] @ train_x.T
        top, idx = sims.topk(k, dim=1)
        votes = torch.zeros(len(top), num_classes, device=device).scatter_add_(
            1, train_y[idx], torch.exp(top / tau)
        )
        correct.append((votes.argmax(1) == test_y[start : start + 1024]).cpu())
    return torch.cat(correct)


# -- features ----------------------------------------------------------------------------------


@torch.no_grad()
def extract_features(
    extractor: FeatureExtractor, x: Tensor, device: torch.device, batch_size: int = 256
) -> Tensor:
    extractor.eval().to(device)
    out = [
        extractor.features(x[i : i + batch_size].to(device)).float().cpu()
        for i in range(0, len(x), batch_size)
    ]
    return torch.cat(out)


def test_samples_also_in_train(x: Tensor, train_idx: list[int], test_idx: list[int]) -> list[int]:
    """Test indices whose decoded sample equals a training sample's, bit for bit: a file
    copied or linked into both splits inflates every probe's test score, the baselines' as
    much as the encoder's, so no comparison shows it. Hashing costs far less than decoding."""

    def digest(i: int) -> bytes:
        return hashlib.blake2b(x[i].contiguous().numpy().tobytes(), digest_size=16).digest()

    seen = {digest(i) for i in train_idx}
    return [i for i in test_idx if digest(i) in seen]


def _own_test_split(splits: set[str]) -> str | None:
    """The split the data's own layout tests on: test/, else val/ (None: there is none)."""
    return "test" if "test" in splits else ("val" if "val" in splits else None)


def _check_declared_splits(root: Path, labeled: list[Item], usable: list[Item]) -> None:
    """The data's own train/test split is used as it was laid out: when skipped files were all
    of one split, a stratified split of the rest would silently score the probe on another
    test set than the data's own."""
    declared = {it.split for it in labeled}
    test_name = _own_test_split(declared)
    if "train" not in declared or test_name is None:
        return
    left = {it.split for it in usable}
    for name in sorted({"train", test_name} - left):
        n = sum(it.split == name for it in labeled)
        raise DataError(
            f"{root}: the data's own {name}/ split has no usable labelled file (all {n} were "
            f"skipped, see the warnings above), so it cannot be used; fix those files, or move "
            f"{name}/ aside to let vm eval split the rest"
        )


def _eval_split(
    items: list[Item], seed: int, groups: Tensor | None
) -> tuple[list[int], list[int], str]:
    """(train indices, test indices, description): the data's own split, else a stratified one
    (of whole recordings where `groups`, from `recording_groups(items)`, says windows share one)."""
    splits = {it.split for it in items}
    test_name = _own_test_split(splits)
    if "train" in splits and test_name is not None:
        train = [i for i, it in enumerate(items) if it.split == "train"]
        test = [i for i, it in enumerate(items) if it.split == test_name]
        return train, test, f"the data's own split (train {len(train)} / {test_name} {len(test)})"
    classes = sorted({it.label for it in items})
    y = torch.tensor([classes.index(it.label) for it in items])
    keep, held = _stratified_holdout(y, 0.2, seed, groups)
    if groups is None:
        return (
            keep.tolist(),
            held.tolist(),
            f"a stratified 80/20 split, seed {seed} (train {len(keep)} / test {len(held)})",
        )
    n_keep, n_held = (len(torch.unique(groups[i])) for i in (keep, held))
    return (
        keep.tolist(),
        held.tolist(),
        f"a stratified 80/20 split by recording, seed {seed} (train {len(keep)} windows of "
        f"{n_keep} recordings / test {len(held)} of {n_held}; no recording in both)",
    )


def evaluate(
    run: Path | None = None,
    data: Path | None = None,
    linear: bool = True,
    knn: bool = False,
    device: str = "auto",
    seed: int = 0,
    runs_parent: Path = Path("runs"),
    group_by: str | None = None,
) -> dict[str, Any]:
    """Probe the run's encoder beside a random encoder and raw-input baselines; saves eval.json.

    `group_by`: a regular expression naming each file's recording in its path (see
    `recording_groups`), for windows saved one per file."""
    if not (linear or knn):
        raise ConfigError("nothing to measure: --no-linear needs --knn")
    seed = check_seed(seed)
    group_by = check_group_by(group_by)
    t0 = time.perf_counter()
    run_dir = runs.resolve_run(run, runs_parent)
    config = runs.read_config(run_dir)
    cfg, meta = config["train"], config["data_meta"]
    root = Path(data) if data is not None else Path(cfg["data"])
    dev = resolve_device(device)
    extractor = load_encoder(run_dir)
    runs.warn_if_unfinished(run_dir, config, "encoder")
    modality = get_modality(cfg["modality"])
    index = scan(root, MODALITIES, modality=cfg["modality"])
    labeled = [it for it in index.items if it.label is not None]
    classes_found = sorted({str(it.label) for it in labeled})
    if len(classes_found) == 1:
        raise DataError(
            f"{root}: every labelled file is in one class ({classes_found[0]}); a probe needs at "
            f"least two class subfolders (e.g. {root}/cat/, {root}/dog/), or pass --data DIR"
        )
    if not labeled:
        raise DataError(
            f"{root}: no labels to evaluate with. Put files in class subfolders (e.g. {root}/cat/1.png, "
            f"{root}/dog/2.png), optionally under train/ and test/; or pass --data DIR with labelled data"
        )
    options = TrainConfig.from_dict(cfg).load  # the loading options the run used
    loaded: TensorData = modality.load(index.root, labeled, options, meta=meta)
    classes = sorted({it.label for it in loaded.items})
    if len(classes) == 1:  # the other classes' files were all unusable: every score would be 1
        raise DataError(
            f"{root}: the usable labelled files are all in one class ({classes[0]}); the "
            f"{len(labeled) - len(loaded)} skipped file(s) held every other class, so a probe "
            "has nothing to tell apart"
        )
    _check_declared_splits(root, labeled, loaded.items)
    groups = recording_groups(loaded.items, group_by)  # windows of one recording, if any
    if group_by is not None:
        n_groups = len(loaded) if groups is None else len(torch.unique(groups))
        info(f"--group-by {group_by!r}: {len(loaded)} samples from {n_groups} recordings")
    train_idx, test_idx, split_desc = _eval_split(loaded.items, seed, groups)
    if len(train_idx) < 2 or not test_idx:  # one sample has no spread to standardise by
        raise DataError(
            f"{root}: not enough labelled samples for a train/test split ({len(loaded)} usable: "
            f"{len(train_idx)} to train the probe on, {len(test_idx)} to test it; it needs at "
            "least 2 and 1"
            + (
                "; windows are split by recording, so a class needs 2 recordings or more, or "
                "put recordings under train/ and test/)"
                if "by recording" in split_desc
                else ")"
            )
        )
    y = torch.tensor([classes.index(it.label) for it in loaded.items])
    unseen = sorted(
        {str(loaded.items[i].label) for i in test_idx}
        - {str(loaded.items[i].label) for i in train_idx}
    )
    if unseen:  # the probe can never predict these: every score is capped below 1
        warn(
            f"{len(unseen)} class(es) have test samples but none to train the probe on "
            f"({first_few(unseen[:5], len(unseen))}): "
            "every probe gets them wrong; put some of their files under train/"
        )
    info(
        f"evaluating {run_dir} on {root}: {len(loaded)} samples, {len(classes)} classes, {split_desc}"
    )
    repeated = test_samples_also_in_train(loaded.x, train_idx, test_idx)
    if repeated:
        names = [str(loaded.items[i].path) for i in repeated[:3]]
        warn(
            f"{len(repeated)} of the {len(test_idx)} test samples are identical to training "
            f"samples ({first_few(names, len(repeated))}): the same data is in both splits (a "
            "copy or a link), so every probe's test score counts samples it was fit on"
        )

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        random_encoder = build_encoder(cfg["encoder"], extractor.space, tuple(meta["raw_shape"]))
    candidates: dict[str, Tensor] = {
        f"vm encoder ({cfg['views']})": extract_features(extractor, loaded.x, dev),
        "random encoder": extract_features(
            FeatureExtractor(extractor.space, random_encoder), loaded.x, dev
        ),
    }
    candidates.update(modality.raw_baselines(loaded, extractor.space))

    tr, te = torch.tensor(train_idx), torch.tensor(test_idx)
    train_groups = None if groups is None else groups[tr]
    test_groups = None if groups is None else groups[te]
    rows = []
    correct: dict[tuple[str, str], Tensor] = {}  # (features, probe) → per-test-sample
    for name, feats in candidates.items():
        row: dict[str, Any] = {"features": name, "dim": int(feats.shape[1])}
        if linear:
            correct[name, "linear"] = linear_probe(
                feats[tr], y[tr], feats[te], y[te], seed, dev, train_groups
            )["correct"]
        if knn:
            correct[name, "knn"] = knn_correct(feats[tr].to(dev), y[tr], feats[te].to(dev), y[te])
        for probe in ("linear", "knn"):
            if (name, probe) in correct:
                c = correct[name, probe]
                row[probe] = c.double().mean().item()
                row[f"{probe}_ci95"] = list(accuracy_interval(c, test_groups))
        rows.append(row)
    ours = next(iter(candidates))
    comparisons = [
        {"baseline": name, "probe": probe}
        | paired_difference(correct[ours, probe], correct[name, probe], test_groups)
        for name in list(candidates)[1:]
        for probe in ("linear", "knn")
        if (ours, probe) in correct
    ]
    result = {
        "run": str(run_dir),
        # which encoder these numbers are of: a resumed run trains it on (vm info compares)
        "encoder_sha256": runs.file_digest(run_dir / runs.ENCODER),
        "encoder_weights_sha256": runs.weights_digest(run_dir / runs.ENCODER),
        "data": str(root),
        "split": split_desc,
        "classes": len(classes),
        "chance": float(torch.bincount(y[te]).max()) / len(te),
        "train_samples": len(train_idx),
        "test_samples": len(test_idx),
        # windowed recordings: how many the test windows came from (intervals count these)
        "test_recordings": None if test_groups is None else len(torch.unique(test_groups)),
        "group_by": group_by,
        "test_samples_also_in_train": len(repeated),
        "rows": rows,
        # the run's encoder minus each baseline on the same test samples (paired, 95 %)
        "comparisons": comparisons,
        "seconds": time.perf_counter() - t0,
    }
    runs.write_json(run_dir / "eval.json", result)
    return result
