"""The Python API: loaded modules are frozen augmentations / feature extractors that check
their inputs against what the run was trained on."""

import numpy as np
import pytest
import torch
from conftest import fast_config, make_image_folder

import vmcli
from vmcli.errors import DataError
from vmcli.session import train


@pytest.fixture(scope="module")
def image_run(tmp_path_factory):
    root = tmp_path_factory.mktemp("api")
    data = make_image_folder(root / "shapes")
    return train(fast_config(data), out=root / "runs", progress=False)["run"]


def test_loaded_modules_are_frozen_and_in_eval_mode(image_run):
    augment = vmcli.load_viewmaker(image_run)
    encoder = vmcli.load_encoder(image_run)
    for module in (augment, encoder):
        assert not module.training
        assert not any(p.requires_grad for p in module.parameters())
    x = torch.rand(4, 1, 16, 16)
    view = augment(x)
    assert view.shape == x.shape and not view.requires_grad and view.grad_fn is None
    assert not encoder(x).requires_grad and encoder.features(x).shape == (4, 256)


def test_trainable_modules_are_differentiable(image_run):
    augment = vmcli.load_viewmaker(image_run, trainable=True)
    encoder = vmcli.load_encoder(image_run, trainable=True)
    assert augment.training and encoder.training
    assert all(p.requires_grad for p in augment.parameters())
    loss = encoder(augment(torch.rand(4, 1, 16, 16))).square().mean()
    loss.backward()
    assert all(p.grad is not None for p in augment.viewmaker.out.parameters())
    assert encoder.encoder.fc.weight.grad is not None


@pytest.mark.parametrize(
    ("batch", "message"),
    [
        (torch.rand(4, 3, 16, 16), r"3 channel\(s\), not 1"),
        (torch.rand(1, 16, 16), r"add a batch axis"),
        (torch.rand(4, 16, 16), r"got a tensor of shape \(4, 16, 16\)"),
        (torch.rand(4, 1, 16, 16) * 255, r"values from .* to .*\(divide by 255\?\)"),
        (torch.randint(0, 255, (4, 1, 16, 16)), r"int64 tensor \(use uint8, or floats\)"),
        (np.zeros((4, 1, 16, 16), np.float32), r"got a ndarray, not a torch.Tensor"),
    ],
)
def test_mismatched_batches_get_one_clear_line(image_run, batch, message):
    for module, name in (
        (vmcli.load_viewmaker(image_run), "viewmaker"),
        (vmcli.load_encoder(image_run), "encoder"),
    ):
        with pytest.raises(DataError, match=message) as err:
            module(batch)
        text = str(err.value)
        assert "\n" not in text
        assert (
            f"this {name} (image run, trained on 1 × 16 × 16) expects images B × 1 × H × W" in text
        )
        assert "float in [0, 1] or uint8" in text


@pytest.mark.parametrize(
    ("batch", "message"),
    [
        (torch.rand(0, 1, 16, 16), r"an empty batch \(no samples\)"),
        (torch.rand(2, 1, 16, 0), r"samples of size 0"),
        (
            torch.rand(2, 1, 16, 16).index_put_((torch.tensor([1]),), torch.tensor(float("nan"))),
            r"NaN or inf values \(sample 1 of the batch\)",
        ),
        (torch.rand(2, 1, 16, 16).to("meta"), r"on meta, but the module is on cpu"),
    ],
)
def test_empty_nonfinite_and_misplaced_batches_get_one_clear_line(image_run, batch, message):
    """Raw torch errors (or NaN views passed off as views) before: a named DataError now."""
    for module in (vmcli.load_viewmaker(image_run), vmcli.load_encoder(image_run)):
        with pytest.raises(DataError, match=message) as err:
            module(batch)
        assert "\n" not in str(err.value)


def test_nonfinite_batches_are_refused_for_spaces_without_a_value_range(tmp_path):
    """Arrays (no value range to check) still get NaN refused, not NaN views."""
    from test_array import make_signals

    run = train(fast_config(make_signals(tmp_path / "sig")), out=tmp_path / "runs", progress=False)
    x = torch.randn(2, 3, 64)
    x[0, 1, 5] = float("inf")
    for module in (vmcli.load_viewmaker(run["run"]), vmcli.load_encoder(run["run"])):
        with pytest.raises(DataError, match=r"NaN or inf values \(sample 0"):
            module(x)
    # finite in float64, inf once computed in float32: NaN views and features before
    big = torch.full((2, 3, 64), 1e39, dtype=torch.float64)
    for module in (vmcli.load_viewmaker(run["run"]), vmcli.load_encoder(run["run"])):
        with pytest.raises(DataError, match=r"float64 values beyond float32's range"):
            module(big)
    augment = vmcli.load_viewmaker(run["run"])
    with pytest.raises(DataError, match=r"planes must be B × K × 64 .* got list"):
        augment.with_planes(torch.randn(2, 3, 64), [1, 2])


@pytest.mark.parametrize("dtype", [torch.float64, torch.float16, torch.bfloat16])
def test_images_of_any_float_type_are_accepted(image_run, dtype):
    """float64 / half images reached the float32 networks as they were: a dtype RuntimeError."""
    x = torch.rand(2, 1, 16, 16).to(dtype)
    view = vmcli.load_viewmaker(image_run)(x)
    assert view.shape == x.shape and torch.isfinite(view).all()
    assert vmcli.load_encoder(image_run)(x).shape == (2, 128)


def test_uint8_and_other_sizes_are_fine(image_run):
    augment = vmcli.load_viewmaker(image_run)
    raw = torch.randint(0, 256, (2, 1, 20, 24), dtype=torch.uint8)
    view = augment(raw)
    assert view.shape == (2, 1, 20, 24) and view.min() >= 0 and view.max() <= 1


@pytest.fixture(scope="module")
def transforms_run(tmp_path_factory):
    root = tmp_path_factory.mktemp("api_tf")
    data = make_image_folder(root / "shapes")
    cfg = fast_config(data, views="learned-transforms")
    return train(cfg, out=root / "runs", progress=False)["run"]


def test_planes_come_back_in_their_own_dtype_with_their_own_values(transforms_run):
    """Learned crops moved planes as float32 (ids above 2^24 rounded, float64 rounded, bool
    masks turned into floats); they are gathered now: any dtype, values exact."""
    augment = vmcli.load_viewmaker(transforms_run)
    x = torch.rand(8, 1, 16, 16)
    for planes in (
        torch.tensor([16777217, 123456789]).repeat(1024).reshape(8, 1, 16, 16),
        torch.rand(8, 2, 16, 16, dtype=torch.float64),
        torch.rand(8, 1, 16, 16) < 0.5,
    ):
        _, moved = augment.with_planes(x, planes, torch.Generator().manual_seed(1))
        assert moved.dtype == planes.dtype and moved.shape == planes.shape
        assert set(moved.unique().tolist()) <= set(planes.unique().tolist())
        assert not torch.equal(moved, planes)  # cropped and flipped


@pytest.mark.parametrize(
    ("call", "error", "message"),
    [
        (lambda a, x: a(x, 3), DataError, "generator is int: give a torch.Generator"),
        (lambda a, x: a.with_planes(x, torch.rand(2, 0, 16, 16)), DataError, "planes must be"),
        (
            lambda a, x: a.with_planes(x, torch.rand(2, 1, 16, 16, dtype=torch.cfloat)),
            DataError,
            "planes must be real values",
        ),
    ],
)
def test_mistakes_in_calls_are_one_vmcli_error(transforms_run, call, error, message):
    with pytest.raises(error, match=message):
        call(vmcli.load_viewmaker(transforms_run), torch.rand(2, 1, 16, 16))


def test_loading_checks_the_device_and_leaves_the_callers_random_stream(image_run):
    """`device="cuda"` without CUDA was torch's AssertionError and "auto" a RuntimeError;
    building the modules drew from the caller's global stream before their weights were
    replaced."""
    from vmcli.errors import ConfigError

    if not torch.cuda.is_available():
        with pytest.raises(ConfigError, match="no CUDA GPU"):
            vmcli.load_viewmaker(image_run, device="cuda")
    with pytest.raises(ConfigError, match="not a device PyTorch knows"):
        vmcli.load_encoder(image_run, device="gpu")
    assert vmcli.load_encoder(image_run, device="auto") is not None
    torch.manual_seed(0)
    expected = torch.rand(3)
    torch.manual_seed(0)
    vmcli.load_viewmaker(image_run)
    vmcli.load_encoder(image_run)
    assert torch.equal(torch.rand(3), expected)


def test_spectrogram_views_are_embedded_by_embed_views(tmp_path):
    """An audio run's views are normalised spectrograms, which the encoder's forward (raw
    waveforms only) refuses; `embed_views` takes them."""
    import numpy as np
    import soundfile as sf

    from vmcli.config import LoadOptions

    data = tmp_path / "clips"
    data.mkdir()
    t = np.arange(4000) / 8000
    for i in range(6):
        sf.write(data / f"{i}.wav", 0.3 * np.sin(2 * np.pi * (200 + 60 * i) * t), 8000)
    cfg = fast_config(
        data, views="viewmaker", batch_size=4, load=LoadOptions(sample_rate=8000, clip_seconds=0.5)
    )
    run = train(cfg, out=tmp_path / "runs", progress=False)["run"]
    views = vmcli.load_viewmaker(run)(torch.randn(2, 1, 4000) * 0.1)
    assert views.dim() == 4
    encoder = vmcli.load_encoder(run)
    with pytest.raises(DataError):
        encoder(views)
    assert encoder.embed_views(views).shape == (2, 128)
    assert encoder.embed_views(views, features=True).shape[0] == 2
    with pytest.raises(DataError, match="views must be B × 1 × 64 × frames"):
        encoder.embed_views(torch.randn(2, 1, 4000))  # a raw batch is no view here


def test_embed_views_of_a_run_whose_views_are_raw_batches_is_the_forward(image_run):
    encoder, augment = vmcli.load_encoder(image_run), vmcli.load_viewmaker(image_run)
    views = augment(torch.rand(3, 1, 16, 16))
    assert torch.equal(encoder.embed_views(views), encoder(views))


def test_the_library_takes_load_options_as_a_dict_and_checks_counts(image_run, tmp_path):
    from vmcli.errors import ConfigError

    cfg = vmcli.TrainConfig(data="x", load={"image_size": 16})
    cfg.validate()
    assert cfg.load == vmcli.LoadOptions(image_size=16)
    with pytest.raises(ConfigError, match="the fields of vmcli.LoadOptions"):
        vmcli.TrainConfig(data="x", load={"imagesize": 16}).validate()
    with pytest.raises(ConfigError, match="--views-per-input must be a whole number ≥ 1; got 1.5"):
        vmcli.augment_folder(tmp_path, tmp_path / "out", run=image_run, views_per_input=1.5)
