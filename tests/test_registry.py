"""Everything registered works: every encoder in every dimensionality, and every modality in
every one of its view spaces, on small data read from real files.

A new encoder or modality is covered by adding it to the registry; a new modality also needs
a small-folder maker in MAKERS below (a test fails until it has one)."""

import json
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch
from conftest import make_image_folder

from vmcli.data import MODALITIES, LoadOptions, scan
from vmcli.errors import ConfigError
from vmcli.nn.encoders import EMBED_DIM, ENCODERS, create_encoder
from vmcli.pipeline import build_encoder, build_viewmaker

# -- encoders -----------------------------------------------------------------------------------
# (dims, input size): small inputs take resnet18's CIFAR stem, larger ones the standard stem
SIZES = [(1, (16,)), (1, (80,)), (2, (8, 12)), (2, (72, 72))]


@pytest.fixture(autouse=True)
def one_thread():
    """Tiny batches gain nothing from threads; on a busy machine they lose a lot (idle waits)."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


@pytest.mark.parametrize("name", sorted(ENCODERS))
@pytest.mark.parametrize(("dims", "size"), SIZES)
def test_every_encoder_builds_and_trains_in_every_dims(name, dims, size):
    torch.manual_seed(0)
    encoder = create_encoder(name, dims=dims, in_channels=2, input_size=size)
    x = torch.randn(2, 2, *size)
    z = encoder(x)
    assert z.shape == (2, EMBED_DIM) and torch.isfinite(z).all()
    assert encoder.features(x).shape == (2, encoder.feature_dim)
    z.square().mean().backward()
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in encoder.parameters())


def test_one_dimensional_encoders_are_plain_conv1d_networks_in_their_state_dict():
    """1-D encoders run as 1 × k 2-D convolutions (faster on CPUs) but keep Conv1d's and
    BatchNorm1d's state dict, and compute what those layers compute: older exports load."""
    torch.manual_seed(0)
    encoder = create_encoder("small", dims=1, in_channels=3, input_size=(40,))
    state = encoder.state_dict()
    assert state["backbone.0.weight"].shape == (32, 3, 3)
    reference, cin = [], 3
    for i, cout in enumerate((32, 64, 128, 256)):
        conv = torch.nn.Conv1d(cin, cout, 3, 1 if i == 0 else 2, 1, bias=False)
        reference += [conv, torch.nn.BatchNorm1d(cout), torch.nn.ReLU()]
        cin = cout
    reference = torch.nn.Sequential(*reference)
    reference.load_state_dict({k[len("backbone.") :]: v for k, v in state.items() if "fc" not in k})
    x = torch.randn(5, 3, 40)
    for train in (True, False):
        encoder.train(train), reference.train(train)
        expected = reference(x).mean(dim=2)
        assert torch.allclose(encoder.features(x), expected, atol=1e-5)


def test_unknown_encoder_names_the_choices():
    with pytest.raises(ConfigError, match="resnet18"):
        create_encoder("vit", dims=2, in_channels=1, input_size=(8, 8))


# -- modalities × view spaces -----------------------------------------------------------------


def _images(root: Path) -> Path:
    return make_image_folder(root, per_class=(3, 0), size=16, mode="RGB")


def _audio(root: Path) -> Path:
    rng = np.random.default_rng(0)
    t = np.arange(8000) / 16000
    for i in range(4):
        clip = 0.3 * np.sin(2 * np.pi * (220 + 110 * i) * t) + 0.01 * rng.normal(size=t.size)
        sf.write(root / f"{i}.wav", clip.astype(np.float32), 16000)
    return root


def _sensor(root: Path) -> Path:
    rng = np.random.default_rng(0)
    for i in range(4):
        values = rng.normal(size=(64, 3)) * [1, 2, 0.5] + [0, 0, 9.8]
        rows = "\n".join(",".join(f"{v:.5f}" for v in row) for row in values)
        (root / f"{i}.csv").write_text("ax,ay,az\n" + rows + "\n")
    return root


def _arrays_1d(root: Path) -> Path:
    rng = np.random.default_rng(0)
    for i in range(4):
        np.save(
            root / f"{i}.npy", rng.normal(size=(3, 40)) * [[1], [1e3], [1e-3]] + [[0], [5], [0]]
        )
    return root


def _arrays_2d(root: Path) -> Path:
    rng = np.random.default_rng(0)
    for i in range(4):
        np.savez(root / f"{i}.npz", x=rng.normal(size=(2, 10, 12)).astype(np.float32) * 7)
    return root


MAKERS = {
    "image": {"rgb": _images},
    "audio": {"clips": _audio},
    "sensor": {"windows": _sensor},
    "array": {"C × T": _arrays_1d, "C × H × W": _arrays_2d},
}
CASES = [
    (modality, space, variant)
    for modality in MODALITIES
    for space in MODALITIES[modality].view_spaces
    for variant in MAKERS.get(modality, {"(no maker)": None})
]


def test_every_modality_has_a_maker_here():
    assert sorted(MAKERS) == sorted(MODALITIES)


@pytest.mark.parametrize("modality_name", list(MODALITIES))
def test_an_unknown_view_space_names_the_ones_there_are(modality_name):
    from vmcli.errors import ConfigError

    modality = MODALITIES[modality_name]
    with pytest.raises(ConfigError) as e:
        modality.build_space("nope", {})
    assert all(name in str(e.value) for name in modality.view_spaces) and "'nope'" in str(e.value)


@pytest.mark.parametrize(("modality_name", "space_name", "variant"), CASES)
def test_every_view_space_fits_round_trips_and_rebuilds(
    tmp_path, modality_name, space_name, variant
):
    root = MAKERS[modality_name][variant](tmp_path)
    modality = MODALITIES[modality_name]
    index = scan(root, MODALITIES)
    assert index.modality == modality_name
    data = modality.load(root, index.items, LoadOptions())
    raw = data.x

    # the run's data description is exactly the modality's declared metadata, and checks out
    assert set(data.meta) == set(modality.meta_type.__annotations__)
    assert modality.check_meta(json.loads(json.dumps(data.meta)), "data_meta.") == list(
        raw.shape[1:]
    )

    space = modality.build_space(space_name, data.meta)
    stats = space.fit(raw)
    view = space.to_view(raw)
    assert view.ndim == space.dims + 2 and view.shape[1] == space.channels
    assert torch.isfinite(view).all()
    enc = space.to_encoder(view)
    assert enc.ndim == space.encoder_dims + 2
    assert tuple(enc.shape[1:]) == space.encoder_input_shape(tuple(raw.shape[1:]))
    if space.invertible:
        back = space.from_view(view)
        torch.testing.assert_close(space.to_view(back), view, rtol=1e-4, atol=1e-4)
        expected = raw.float() / 255 if raw.dtype == torch.uint8 else raw.float()
        torch.testing.assert_close(back, expected, rtol=1e-4, atol=1e-4)

    # what a run stores (config.json, safetensors header) rebuilds the very same space
    meta = json.loads(json.dumps({**data.meta, "raw_shape": list(raw.shape[1:])}))
    rebuilt = modality.build_space(space_name, meta, json.loads(json.dumps(stats)))
    assert torch.equal(rebuilt.to_view(raw), view)
    assert torch.equal(rebuilt.to_encoder(view), enc)
    if space.invertible:
        assert torch.equal(rebuilt.from_view(view), space.from_view(view))

    # and the networks and the handcrafted recipe run on it
    viewmaker = build_viewmaker(rebuilt, budget=0.1, width=8)
    encoder = build_encoder("small", rebuilt, tuple(raw.shape[1:]))
    out = viewmaker(view, generator=torch.Generator().manual_seed(0))
    assert out.shape == view.shape
    assert encoder(rebuilt.to_encoder(out)).shape == (len(raw), EMBED_DIM)
    handmade = modality.handcrafted(data.meta)(raw, torch.Generator().manual_seed(0))
    assert torch.isfinite(rebuilt.to_encoder(rebuilt.to_view(handmade))).all()
    assert isinstance(modality.describe_raw(meta), str)


def test_the_library_loads_without_importing_any_decoder(tmp_path):
    """`load_viewmaker`/`load_encoder`/`train` import no audio or CSV decoder (pandas,
    soundfile, soxr) until a file of that kind is read: they cost ~0.7 s and a native library."""
    import subprocess
    import sys

    code = (
        "import sys\n"
        "from vmcli import load_viewmaker, load_encoder, train, evaluate, augment_folder\n"
        "from vmcli.data import MODALITIES\n"
        "print(sorted(m for m in ('pandas', 'soundfile', 'soxr') if m in sys.modules))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]", out.stdout + out.stderr
