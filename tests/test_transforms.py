"""Learned transforms: bounded, differentiable, seeded strengths; exported and applied."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import soundfile as sf
import torch
from safetensors.torch import save_file
from typer.testing import CliRunner

import vmcli
from vmcli import runs
from vmcli.cli import app
from vmcli.config import TrainConfig, parse_transforms_budget
from vmcli.errors import CheckpointError, ConfigError
from vmcli.nn.transforms import (
    AudioTransforms,
    ImageTransforms,
    SensorTransforms,
    create_transforms,
    fill_to_mean,
    hard_flip,
)
from vmcli.views import color_jitter, random_grayscale, random_resized_crop, sensor_views

FAMILIES = [
    (SensorTransforms, (6, 6, 64)),
    (AudioTransforms, (4, 1, 4000)),
    (ImageTransforms, (6, 3, 16, 16)),
]


def batch(shape: tuple[int, ...], seed: int = 0) -> torch.Tensor:
    """A batch in the family's units: pixels in [0, 1] for images, signals otherwise."""
    g = torch.Generator().manual_seed(seed)
    return torch.rand(shape, generator=g) if len(shape) == 4 else torch.randn(shape, generator=g)


def contrastive_like(v: torch.Tensor) -> torch.Tensor:
    """A loss that depends on every part of a view (not just its mean)."""
    return (v[:, :, 1:] - v[:, :, :-1]).square().mean() + v.square().mean() + v.abs().mean()


@pytest.mark.parametrize(("cls", "shape"), FAMILIES)
def test_gradient_reaches_every_strength(cls, shape):
    t = cls()
    x = batch(shape)
    contrastive_like(t(x, torch.Generator().manual_seed(1))).backward()
    g = t.logits.grad
    assert g is not None and torch.isfinite(g).all()
    assert (g.abs() > 0).all(), dict(zip([s.name for s in cls.STRENGTHS], g.tolist(), strict=True))


@pytest.mark.parametrize(("cls", "shape"), FAMILIES)
def test_strengths_stay_within_bounds(cls, shape):
    t = cls()
    for value in (-1e4, 1e4):
        with torch.no_grad():
            t.logits.fill_(value)
        for spec, s in zip(cls.STRENGTHS, t.strengths().values(), strict=True):
            assert spec.low - 1e-6 <= float(s.detach()) <= spec.high + 1e-6
        v = t(batch(shape), torch.Generator().manual_seed(0))
        assert torch.isfinite(v).all() and v.shape == shape


@pytest.mark.parametrize(("cls", "shape"), FAMILIES)
def test_same_seed_same_views(cls, shape):
    t, x = cls(), batch(shape)
    a = t(x, torch.Generator().manual_seed(5))
    b = t(x, torch.Generator().manual_seed(5))
    c = t(x, torch.Generator().manual_seed(6))
    assert torch.equal(a, b) and not torch.equal(a, c)


@pytest.mark.parametrize(("cls", "shape"), FAMILIES)
def test_some_rows_views_are_those_rows_of_all_the_views(cls, shape):
    """A rank of a distributed run draws for the whole batch and transforms its own rows:
    its views must be exactly those rows of the views one process makes."""
    t, x = cls(), batch(shape)
    rows = torch.tensor([3, 1, 2])
    everything = t(x, torch.Generator().manual_seed(5))
    mine = t(x, torch.Generator().manual_seed(5), rows=rows)
    torch.testing.assert_close(mine, everything[rows], atol=1e-6, rtol=0)


def test_initial_strengths_are_the_handcrafted_recipe():
    import inspect

    defaults = inspect.signature(sensor_views).parameters
    s = {k: float(v.detach()) for k, v in SensorTransforms().strengths().items()}
    assert s["crop"] == pytest.approx(1 - defaults["min_crop"].default, abs=1e-6)
    assert s["time_warp"] == pytest.approx(defaults["warp_sigma"].default, abs=1e-6)
    assert s["permute"] == pytest.approx(defaults["permute_p"].default, abs=1e-6)
    assert s["magnitude_warp"] == pytest.approx(defaults["magnitude_sigma"].default, abs=1e-6)
    assert s["scale"] == pytest.approx(defaults["scale_sigma"].default, abs=1e-6)
    assert s["jitter"] == pytest.approx(defaults["jitter"].default, abs=1e-6)


def test_permutation_flip_is_hard_with_a_gradient():
    """Each window is either itself or a real segment shuffle — never a blend of the two — as
    often as the learned probability says, and the probability still gets a gradient."""
    p = torch.tensor(0.3, requires_grad=True)
    m = hard_flip(p, torch.rand(20_000, generator=torch.Generator().manual_seed(0)))
    assert set(m.detach().unique().tolist()) <= {0.0, 1.0}
    assert float(m.detach().mean()) == pytest.approx(0.3, abs=0.015)
    (m * torch.linspace(-1, 1, 20_000)).sum().backward()
    assert p.grad is not None and float(p.grad) != 0

    t = SensorTransforms()
    zero = {k: torch.tensor(0.0) for k in t.strengths()}
    x = torch.randn(64, 2, 32, generator=torch.Generator().manual_seed(1))
    v = t.apply_strengths(
        x, {**zero, "permute": torch.tensor(0.5)}, torch.Generator().manual_seed(2)
    )
    segments = x.unfold(2, 8, 8)  # B × C × 4 segments × 8
    kept = shuffled = 0
    for i in range(len(x)):
        if torch.allclose(v[i], x[i], atol=1e-5):
            kept += 1
            continue
        out = v[i].unfold(1, 8, 8)
        # every output segment is one of the input's segments, whole
        match = [
            any(torch.allclose(out[:, j], segments[i][:, k], atol=1e-5) for k in range(4))
            for j in range(4)
        ]
        assert all(match), f"window {i} is a blend, not a permutation"
        shuffled += 1
    assert kept > 10 and shuffled > 10


def test_zero_strengths_leave_a_sensor_window_unchanged():
    t = SensorTransforms()
    with torch.no_grad():
        t.logits.fill_(-1e4)  # every strength at its lower bound, 0
    x = torch.randn(3, 2, 32)
    assert torch.allclose(t(x, torch.Generator().manual_seed(0)), x, atol=1e-5)


@pytest.mark.parametrize("length", [1, 2, 3])
def test_very_short_sensor_windows_give_finite_views(length):
    """A window of one time step has no sample std; its jitter must not make the view NaN."""
    x = torch.randn(3, 2, length)
    view = SensorTransforms()(x, torch.Generator().manual_seed(0))
    assert view.shape == x.shape and torch.isfinite(view).all()


def test_initial_image_strengths_are_the_simclr_recipe():
    import inspect

    crop = inspect.signature(random_resized_crop).parameters
    jitter = inspect.signature(color_jitter).parameters
    grey = inspect.signature(random_grayscale).parameters
    s = {k: float(v.detach()) for k, v in ImageTransforms().strengths().items()}
    assert s["crop"] == pytest.approx(1 - crop["scale"].default[0], abs=1e-6)
    assert s["flip"] == pytest.approx(crop["flip_p"].default, abs=1e-6)
    for name in ("brightness", "contrast", "saturation", "hue"):
        assert s[name] == pytest.approx(jitter[name].default, abs=1e-6)
    assert s["colour_p"] == pytest.approx(jitter["p"].default, abs=1e-6)
    assert s["grayscale"] == pytest.approx(grey["p"].default, abs=1e-6)


def test_image_transforms_are_the_identity_at_zero_and_a_mirror_with_flip_alone():
    t = ImageTransforms()
    zero = {k: torch.tensor(0.0) for k in t.strengths()}
    x = batch((5, 3, 12, 12))
    g = torch.Generator().manual_seed(0)
    assert torch.allclose(t.apply_strengths(x, zero, g), x, atol=1e-5)
    flipped = t.apply_strengths(x, {**zero, "flip": torch.tensor(1.0)}, g)
    assert torch.allclose(flipped, x.flip(-1), atol=1e-5)
    # uint8 pixels are scaled to [0, 1] first, and every view stays in [0, 1]
    raw = (x * 255).round().to(torch.uint8)
    with torch.no_grad():
        t.logits.fill_(1e4)  # every strength at its upper bound
        v = t(raw, g)
    assert v.dtype == torch.float32 and float(v.min()) >= 0 and float(v.max()) <= 1


def test_grey_images_leave_the_colour_strengths_untouched():
    t = ImageTransforms()
    contrastive_like(t(batch((8, 1, 16, 16)), torch.Generator().manual_seed(0))).backward()
    grads = dict(zip([s.name for s in t.STRENGTHS], t.logits.grad.tolist(), strict=True))
    assert all(grads[k] == 0 for k in ("saturation", "hue", "grayscale")), grads
    assert all(grads[k] != 0 for k in ("crop", "flip", "brightness", "contrast")), grads


def test_arrays_have_no_transform_family():
    with pytest.raises(ConfigError, match="sensor, audio, image"):
        create_transforms("array")


def write_sensor_folder(root, n=24, t=64):
    rng = np.random.default_rng(0)
    for split, count in (("train", n), ("test", 6)):
        for i in range(count):
            cls = "walk" if i % 2 else "sit"
            path = root / split / cls / f"s{i:02d}.csv"
            path.parent.mkdir(parents=True, exist_ok=True)
            f = 1.0 if cls == "walk" else 0.2
            sig = np.sin(np.linspace(0, 6 * f * np.pi, t))[:, None] + 0.1 * rng.normal(size=(t, 3))
            pd.DataFrame(sig.round(5), columns=["ax", "ay", "az"]).to_csv(path, index=False)
    return root


FAST = ["--epochs", "3", "--batch-size", "8", "--encoder", "small", "--viewmaker-width", "8"]


def train_learned_transforms(data: Path, tmp_path: Path, *options: str) -> tuple[dict, Path]:
    """`vm train DATA --views learned-transforms` (a fast adversary): its summary and run."""
    r = CliRunner().invoke(
        app,
        ["train", str(data), "--views", "learned-transforms", *options]
        + ["--transforms-lr", "0.2", "--out", str(tmp_path / "runs"), "--json", "-q", *FAST],
    )
    assert r.exit_code == 0, r.output
    return json.loads(r.stdout), tmp_path / "runs" / "train"


def test_learned_transforms_train_export_and_augment_csv(tmp_path):
    data = write_sensor_folder(tmp_path / "watch")
    cli = CliRunner()
    summary, run = train_learned_transforms(data, tmp_path)
    assert summary["transforms_budget"] is None  # sensors: free strengths by default
    assert (run / runs.TRANSFORMS).is_file() and not (run / runs.VIEWMAKER).exists()
    table = {row["name"]: row for row in summary["transforms"]}
    assert set(table) == {s.name for s in SensorTransforms.STRENGTHS}
    assert any(abs(row["learned"] - row["initial"]) > 1e-3 for row in table.values())
    # export → load → the learned strengths, and the same views from the same generator
    augment = vmcli.load_viewmaker(run)
    learned = {k: float(v) for k, v in augment.transforms.strengths().items()}
    assert learned == pytest.approx({k: row["learned"] for k, row in table.items()}, abs=1e-6)
    x = torch.randn(2, 3, 64)
    with torch.no_grad():
        a = augment(x, torch.Generator().manual_seed(0))
        b = augment.transforms(x, torch.Generator().manual_seed(0))
    assert torch.allclose(a, b, atol=1e-5)  # signal space: the transformed window, in CSV units
    r = cli.invoke(
        app, ["augment", str(data / "test"), "--out", str(tmp_path / "views"), "--run", str(run)]
    )
    assert r.exit_code == 0, r.output
    src = pd.read_csv(data / "test" / "sit" / "s00.csv")
    out = pd.read_csv(tmp_path / "views" / "sit" / "s00.csv")
    assert list(out.columns) == list(src.columns) and out.shape == src.shape
    assert not np.allclose(out.to_numpy(), src.to_numpy())


def test_fixed_transforms_keep_their_strengths_and_compose_with_the_viewmaker(tmp_path):
    data = write_sensor_folder(tmp_path / "watch")
    cli = CliRunner()
    for views in ("fixed-transforms", "learned-transforms+viewmaker"):
        r = cli.invoke(
            app,
            [
                "train",
                str(data),
                "--views",
                views,
                "--out",
                str(tmp_path / views),
                "--json",
                "-q",
                *FAST,
            ],
        )
        assert r.exit_code == 0, r.output
        summary = json.loads(r.stdout)
        rows = summary["transforms"]
        if views == "fixed-transforms":
            assert all(row["learned"] == pytest.approx(row["initial"], abs=1e-6) for row in rows)
            assert summary["adversary"] is None
        else:
            assert (tmp_path / views / "train" / runs.VIEWMAKER).is_file()
            assert summary["adversary"] is not None
            augment = vmcli.load_viewmaker(tmp_path / views / "train")
            assert augment.transforms is not None and augment.viewmaker is not None


def test_audio_learned_transforms_write_wav_views(tmp_path):
    rate = 8000
    for split, n in (("train", 8), ("test", 2)):
        for i in range(n):
            folder = tmp_path / "clips" / split / ("low" if i % 2 else "high")
            folder.mkdir(parents=True, exist_ok=True)
            f = 220 if i % 2 else 880
            t = np.arange(rate // 2) / rate
            sf.write(folder / f"c{i}.wav", 0.3 * np.sin(2 * np.pi * f * t), rate, subtype="PCM_16")
    cli = CliRunner()
    r = cli.invoke(
        app,
        [
            "train",
            str(tmp_path / "clips"),
            "--views",
            "learned-transforms",
            "--view-space",
            "waveform",
            "--sample-rate",
            "8000",
            "--out",
            str(tmp_path / "runs"),
            "-q",
            *FAST,
        ],
    )
    assert r.exit_code == 0, r.output
    r = cli.invoke(
        app,
        [
            "augment",
            str(tmp_path / "clips" / "test"),
            "--out",
            str(tmp_path / "views"),
            "--run",
            str(tmp_path / "runs" / "train"),
        ],
    )
    assert r.exit_code == 0, r.output
    src, rate_in = sf.read(tmp_path / "clips" / "test" / "high" / "c0.wav")
    out, rate_out = sf.read(tmp_path / "views" / "high" / "c0.wav")
    assert rate_out == rate_in and out.shape == src.shape and not np.allclose(out, src)
    # audio's default budget: the recipe's own mean strength, recorded as a number
    summary = json.loads((tmp_path / "runs" / "train" / runs.SUMMARY).read_text())
    recipe = AudioTransforms(budget="recipe").budget
    assert summary["transforms_budget"] == pytest.approx(recipe, abs=1e-9)
    config = json.loads((tmp_path / "runs" / "train" / runs.CONFIG).read_text())
    assert config["train"]["transforms_budget"] == "recipe"


def test_image_learned_transforms_train_export_and_augment_pngs(rgb_folder, tmp_path):
    cli = CliRunner()
    summary, run = train_learned_transforms(rgb_folder, tmp_path)
    assert (run / runs.TRANSFORMS).is_file() and not (run / runs.VIEWMAKER).exists()
    table = {row["name"]: row for row in summary["transforms"]}
    assert set(table) == {s.name for s in ImageTransforms.STRENGTHS}
    assert any(abs(row["learned"] - row["initial"]) > 1e-3 for row in table.values())
    augment = vmcli.load_viewmaker(run)
    assert isinstance(augment.transforms, ImageTransforms)
    raw = torch.randint(0, 256, (2, 3, 20, 20), dtype=torch.uint8)
    with torch.no_grad():
        a = augment(raw, torch.Generator().manual_seed(0))
        b = augment.transforms(raw, torch.Generator().manual_seed(0))
    assert torch.allclose(a, b, atol=1e-6)  # pixels in [0, 1]: the transformed image
    r = cli.invoke(
        app,
        ["augment", str(rgb_folder / "test"), "--out", str(tmp_path / "views"), "--run", str(run)],
    )
    assert r.exit_code == 0, r.output
    from PIL import Image

    for src in sorted((rgb_folder / "test").rglob("*.png")):
        out = tmp_path / "views" / src.relative_to(rgb_folder / "test")
        a, b = np.asarray(Image.open(src)), np.asarray(Image.open(out))
        assert a.shape == b.shape and a.dtype == b.dtype
    assert not np.array_equal(a, b)


# -- a budget across transforms --------------------------------------------------------------


@pytest.mark.parametrize("budget", [0.05, 0.322, 0.5, 0.9, 1.0])
def test_fill_to_mean_hits_the_budget_exactly_and_keeps_proportions(budget):
    frac = torch.tensor([0.9, 0.05, 0.3, 0.6, 0.01, 0.2])
    out = fill_to_mean(frac, budget)
    assert float(out.mean()) == pytest.approx(budget, abs=1e-6)
    assert float(out.max()) <= 1 + 1e-7 and float(out.min()) > 0
    free = out < 1 - 1e-6  # held entries are 1 (to float precision)
    assert free.any() == (budget < 1)
    ratio = out[free] / frac[free]  # unsaturated entries share one scale
    assert torch.allclose(ratio, ratio[:1].expand_as(ratio), rtol=1e-5)


@pytest.mark.parametrize(("cls", "shape"), FAMILIES)
def test_a_budget_holds_while_the_adversary_moves_strength_between_transforms(cls, shape):
    t = cls(budget=0.4)
    before = t.fractions().detach().clone()
    assert float(before.mean()) == pytest.approx(0.4, abs=1e-6)
    opt = torch.optim.Adam(t.parameters(), lr=0.2)
    x = batch(shape)
    for step in range(5):
        opt.zero_grad()
        (-contrastive_like(t(x, torch.Generator().manual_seed(step)))).backward()  # adversary
        assert t.logits.grad is not None and (t.logits.grad.abs() > 0).any()
        opt.step()
    after = t.fractions().detach()
    assert float(after.mean()) == pytest.approx(0.4, abs=1e-6)  # the total never moves
    assert not torch.allclose(after, before, atol=1e-3)  # its allocation does
    table = t.table()  # initial strengths are the recipe rescaled to the budget
    init = {row["name"]: row["initial"] for row in table}
    spec = {s.name: s for s in cls.STRENGTHS}
    fracs = [(init[k] - spec[k].low) / (spec[k].high - spec[k].low) for k in init]
    assert sum(fracs) / len(fracs) == pytest.approx(0.4, abs=1e-5)


def train_sensor_transforms(tmp_path, *options: str) -> tuple[dict, Path]:
    """`vm train` with learned transforms on a small sensor folder: its summary and run."""
    return train_learned_transforms(write_sensor_folder(tmp_path / "watch"), tmp_path, *options)


def test_a_transforms_budget_is_exported_and_checked(tmp_path):
    summary, run = train_sensor_transforms(tmp_path, "--transforms-budget", "0.5")
    assert summary["transforms_budget"] == 0.5
    shown = CliRunner().invoke(app, ["info", str(run)])
    assert shown.exit_code == 0 and "transforms budget" in shown.output, shown.output
    augment = vmcli.load_viewmaker(run)
    assert augment.transforms.budget == 0.5
    assert float(augment.transforms.fractions().mean()) == pytest.approx(0.5, abs=1e-6)
    learned = {k: float(v) for k, v in augment.transforms.strengths().items()}
    rows = {row["name"]: row["learned"] for row in summary["transforms"]}
    assert learned == pytest.approx(rows, abs=1e-6)
    # a tampered budget in the export is refused with the file named, not applied
    tensors, header = runs.read_weights(run / runs.TRANSFORMS)
    header["transforms_budget"] = 2.0
    raw = {k: json.dumps(v) for k, v in header.items()}
    save_file(tensors, str(run / runs.TRANSFORMS), metadata=raw)
    with pytest.raises(CheckpointError, match=r"transforms\.safetensors.*transforms_budget"):
        vmcli.load_viewmaker(run)


@pytest.mark.parametrize(("cls", "shape"), FAMILIES)
def test_the_recipe_budget_starts_exactly_at_the_recipe(cls, shape):
    """`recipe`: the budget is the recipe's own mean strength under the bounds in force, so
    the initial strengths are the recipe unchanged (no rescaling) and only their split moves."""
    free, held = cls(), cls(budget="recipe")
    for a, b in zip(held.table(), free.table(), strict=True):  # the same initial strengths
        assert a["initial"] == pytest.approx(b["initial"], rel=1e-5), a["name"]
    expected = sum(
        (row["initial"] - row["low"]) / (row["high"] - row["low"]) for row in free.table()
    ) / len(cls.STRENGTHS)
    assert held.budget == pytest.approx(expected, abs=1e-6)
    first = cls.STRENGTHS[0]
    tight = cls(budget="recipe", limits={first.name: min(first.init * 1.5, first.max_limit)})
    assert tight.budget != pytest.approx(held.budget)  # recomputed under the new bounds
    with pytest.raises(ValueError, match="recipe"):
        cls(budget="half")


def test_a_recipe_budget_on_the_command_line_is_resolved_and_exported(tmp_path):
    summary, run = train_sensor_transforms(tmp_path, "--transforms-budget", "recipe")
    assert summary["transforms_budget"] == pytest.approx(SensorTransforms(budget="recipe").budget)
    assert vmcli.load_viewmaker(run).transforms.budget == pytest.approx(
        summary["transforms_budget"], abs=1e-9
    )
    r = CliRunner().invoke(
        app, ["train", str(tmp_path / "watch"), "--transforms-budget", "most", "-q"]
    )
    assert r.exit_code != 0 and "--transforms-budget takes a fraction" in r.output, r.output
    # the words: 'none' frees the strengths even where the modality's default holds a budget
    assert [parse_transforms_budget(w) for w in ("none", "Recipe", "auto", "0.3")] == [
        None,
        "recipe",
        "auto",
        0.3,
    ]
    with pytest.raises(ConfigError, match="transforms-budget"):
        TrainConfig(data="x", transforms_budget=1.5).validate()


def test_a_strength_held_at_its_bound_by_the_budget_can_still_move():
    t = SensorTransforms(budget=0.925)  # crop, time warp, permute, magnitude warp, scale at 1
    frac = t.fractions()
    assert (frac.detach() >= 1 - 1e-6).sum() == 5
    assert float(frac.detach().mean()) == pytest.approx(0.925, abs=1e-6)
    (frac * torch.arange(1.0, 7.0)).sum().backward()  # any loss that weighs them differently
    assert (t.logits.grad.abs() > 0).sum() >= 5  # held entries still get a gradient


def test_the_budget_holds_when_some_fractions_are_tiny_and_others_near_one():
    """Held entries are exactly 1 even when the free ones need a huge scale (a cancellation
    here once turned every held strength into 0)."""
    frac = torch.sigmoid(torch.tensor([10.1, 10.05, 0.0, 10.95, 10.4, -18.6], requires_grad=True))
    out = fill_to_mean(frac, 0.925)
    assert torch.equal(out.detach()[:5], torch.ones(5))
    assert float(out.detach().mean()) == pytest.approx(0.925, abs=1e-6)


def test_limits_lower_a_strengths_upper_bound_and_keep_the_recipe_inside():
    t = create_transforms("audio", limits="time_mask=0.15,noise=0.5")
    with torch.no_grad():
        t.logits.fill_(1e4)  # every strength at its upper bound
    s = {k: float(v.detach()) for k, v in t.strengths().items()}
    assert s["time_mask"] == pytest.approx(0.15) and s["noise"] == pytest.approx(0.5)
    assert s["speed"] == pytest.approx(0.2)  # not limited: its own bound
    rows = {r["name"]: r for r in create_transforms("audio", limits={"time_mask": 0.15}).table()}
    assert rows["time_mask"]["high"] == 0.15 and rows["time_mask"]["initial"] == pytest.approx(0.1)
    # a limit below the recipe's strength starts the strength at the limit
    low = create_transforms("sensor", limits="jitter=0.02").table()
    assert next(r for r in low if r["name"] == "jitter")["initial"] == pytest.approx(0.02, rel=1e-3)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("foo=1", "no strength 'foo'"),
        ("time_mask=0.9", "at most 0.3"),
        ("time_mask=0", "above 0"),
        ("time_mask", "name=value"),
        ("noise=abc", "name=value"),
    ],
)
def test_bad_limits_are_refused_by_name(text, message):
    with pytest.raises(ConfigError, match=message):
        create_transforms("audio", limits=text)


@pytest.mark.parametrize(
    ("family", "text", "message"),
    [
        ("image", "crop=1.2", r"limit of crop .*at most 0\.95"),  # was: NaN grids, a segfault
        ("image", "crop=1", r"at most 0\.95"),
        ("sensor", "crop=1", r"limit of crop .*at most 0\.95"),
        ("image", "flip=2", r"limit of flip .*at most 1 .*probability"),
        ("image", "colour_p=1.5", r"limit of colour_p .*at most 1 "),
        ("image", "grayscale=2", r"limit of grayscale .*at most 1 "),
        ("sensor", "permute=2", r"limit of permute .*at most 1 "),
        ("image", "brightness=1.2", r"limit of brightness .*at most 1 .*≥ 0"),
        ("image", "contrast=1.6", r"limit of contrast .*at most 1 "),
        ("image", "saturation=1.01", r"limit of saturation .*at most 1 "),
    ],
)
def test_limits_never_pass_what_a_strength_means(family, text, message):
    """Twice the default bound is refused where it stops making sense: a probability of 2, a
    crop of more than the whole area, a colour factor 1 ± b below 0."""
    with pytest.raises(ConfigError, match=message):
        create_transforms(family, limits=text)


def test_the_largest_limits_still_give_finite_views_and_gradients():
    """At every ceiling, with every strength at its upper bound, views and gradients are
    finite (a crop limit of 1.2 made NaN sampling grids and crashed grid_sample's backward)."""
    top = "crop=0.95,flip=1,brightness=1,contrast=1,saturation=1,hue=1,colour_p=1,grayscale=1"
    for family, limits, shape in [
        ("image", top, (6, 3, 16, 16)),
        (
            "sensor",
            "crop=0.95,permute=1,time_warp=1,magnitude_warp=1.2,scale=1,jitter=1",
            (6, 6, 64),
        ),
    ]:
        t = create_transforms(family, limits=limits)
        assert all(r["high"] <= 1 for r in t.table() if r["unit"] == "probability")
        with torch.no_grad():
            t.logits.fill_(1e4)
        for seed in range(3):
            t.logits.grad = None
            v = t(batch(shape, seed), torch.Generator().manual_seed(seed))
            contrastive_like(v).backward()
            assert torch.isfinite(v).all() and torch.isfinite(t.logits.grad).all(), family


def test_limits_are_exported_and_a_run_reloads_under_its_own_bounds(tmp_path):
    summary, run = train_sensor_transforms(tmp_path, "--transforms-max", "jitter=0.2")
    rows = {row["name"]: row for row in summary["transforms"]}
    assert rows["jitter"]["high"] == 0.2 and rows["crop"]["high"] == 0.5
    augment = vmcli.load_viewmaker(run)
    assert augment.transforms.bounds["jitter"] == (0.0, 0.2)
    learned = {k: float(v) for k, v in augment.transforms.strengths().items()}
    assert learned == pytest.approx({k: v["learned"] for k, v in rows.items()}, abs=1e-6)
    # an export made under wider bounds than today's defaults (within twice) keeps its bounds
    tensors, header = runs.read_weights(run / runs.TRANSFORMS)
    header["strengths"][0]["high"] = 0.8  # crop: default 0.5
    meta = {k: json.dumps(v) for k, v in header.items()}
    save_file(tensors, str(run / runs.TRANSFORMS), metadata=meta)
    assert vmcli.load_viewmaker(run).transforms.bounds["crop"] == (0.0, 0.8)
    # tampered bounds in the export are refused with the file named
    header["strengths"][0]["high"] = 99.0
    save_file(
        tensors, str(run / runs.TRANSFORMS), metadata={k: json.dumps(v) for k, v in header.items()}
    )
    with pytest.raises(CheckpointError, match=r"transforms\.safetensors.*limit of crop"):
        vmcli.load_viewmaker(run)


def test_a_malformed_transforms_max_is_a_clear_cli_error(tmp_path):
    data = write_sensor_folder(tmp_path / "watch")
    r = CliRunner().invoke(
        app,
        ["train", str(data), "--views", "learned-transforms", "--transforms-max", "warp=0.1"]
        + ["--out", str(tmp_path / "runs"), *FAST],
    )
    assert r.exit_code != 0 and "no strength 'warp'" in r.output, r.output
    assert not (tmp_path / "runs" / "train" / runs.ENCODER).exists()


@pytest.mark.parametrize("value", [True, float("nan"), float("inf"), "0.1"])
def test_a_limit_that_is_not_a_finite_number_is_refused(value):
    with pytest.raises(ConfigError, match="must be a number"):
        create_transforms("audio", limits={"noise": value})
