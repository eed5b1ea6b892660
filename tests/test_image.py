from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from vmcli.data import MODALITIES, LoadOptions, scan
from vmcli.data.image import ImageModality
from vmcli.errors import DataError

M = ImageModality()


def load(root: Path, **opts):
    index = scan(root, MODALITIES)
    return M.load(root, index.items, LoadOptions(**opts))


def test_odd_files_are_decoded_or_skipped_by_name(tmp_path, capsys):
    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 255, (20, 30, 4), dtype=np.uint8), "RGBA").save(
        tmp_path / "rgba.png"
    )
    Image.fromarray(rng.integers(0, 65535, (24, 24), dtype=np.uint16)).save(tmp_path / "deep.png")
    Image.fromarray(rng.integers(0, 255, (16, 16, 3), dtype=np.uint8)).convert("P").save(
        tmp_path / "pal.gif"
    )
    Image.fromarray(rng.integers(0, 255, (16, 16, 3), dtype=np.uint8)).convert("CMYK").save(
        tmp_path / "cmyk.jpg"
    )
    Image.fromarray(rng.integers(0, 255, (16, 16, 3), dtype=np.uint8)).save(tmp_path / "x.bmp")
    Image.fromarray(rng.integers(0, 255, (16, 16, 3), dtype=np.uint8)).save(tmp_path / "x.webp")
    Image.fromarray(rng.integers(0, 255, (16, 16, 3), dtype=np.uint8)).save(tmp_path / "x.tiff")
    good = tmp_path / "good.png"
    Image.fromarray(rng.integers(0, 255, (16, 16, 3), dtype=np.uint8)).save(good)
    (tmp_path / "truncated.png").write_bytes(good.read_bytes()[:60])
    (tmp_path / "empty.png").write_bytes(b"")
    (tmp_path / "text.jpg").write_text("not an image")
    before = {p.name: p.read_bytes() for p in tmp_path.iterdir()}

    data = load(tmp_path, image_size=16)
    assert data.x.dtype == torch.uint8 and data.x.shape[1:] == (3, 16, 16)
    assert len(data) == 8
    assert sorted(p.name for p, _ in data.skipped) == ["empty.png", "text.jpg", "truncated.png"]
    err = capsys.readouterr().err
    assert "truncated.png" in err and "skipped 3" in err
    assert {p.name: p.read_bytes() for p in tmp_path.iterdir()} == before, (
        "input files must not change"
    )


def test_sixteen_bit_is_scaled_not_clipped(tmp_path):
    Image.fromarray(np.full((8, 8), 32768, np.uint16)).save(tmp_path / "half.png")
    data = load(tmp_path)
    assert data.x.shape[1] == 1
    assert abs(int(data.x.float().mean()) - 128) <= 1


def test_grayscale_stays_one_channel_and_default_size_is_median(tmp_path):
    for i, s in enumerate((20, 30, 40)):
        Image.fromarray(np.zeros((s, s + 5), np.uint8)).save(tmp_path / f"{i}.png")
    data = load(tmp_path)
    assert data.x.shape == (3, 1, 30, 30)
    assert data.meta == {"size": 30, "channels": 1}


def test_nothing_readable_is_an_error(tmp_path):
    (tmp_path / "a.png").write_bytes(b"\x89PNG\r\n\x1a\n broken")
    with pytest.raises(DataError, match="could be read"):
        load(tmp_path)


@pytest.mark.parametrize(
    "name,mode,make",
    [
        ("g.png", "L", lambda r: r.integers(0, 255, (12, 14), dtype=np.uint8)),
        ("c.jpg", "RGB", lambda r: r.integers(0, 255, (12, 14, 3), dtype=np.uint8)),
        ("a.png", "RGBA", lambda r: r.integers(0, 255, (12, 14, 4), dtype=np.uint8)),
        ("w.png", "I;16", lambda r: r.integers(0, 65535, (12, 14), dtype=np.uint16)),
    ],
)
def test_write_keeps_format_mode_size_and_alpha(tmp_path, name, mode, make):
    arr = make(np.random.default_rng(1))
    src = tmp_path / name
    Image.fromarray(arr).save(src)
    meta = {"channels": 1 if mode in ("L", "I;16") else 3, "size": 8}
    sample = M.read_file(src, meta, LoadOptions())
    view = sample.raw.float() / 255
    dst = tmp_path / "out" / name
    dst.parent.mkdir()
    M.write_file(view, sample, dst)
    out = Image.open(dst)
    assert out.size == (14, 12) and out.format == Image.open(src).format
    assert out.mode == Image.open(src).mode
    if mode == "RGBA":
        assert np.array_equal(np.asarray(out)[..., 3], arr[..., 3])
    if mode in ("L", "RGBA"):  # lossless formats round-trip the pixels
        assert np.array_equal(
            np.asarray(out)[..., :3] if mode == "RGBA" else np.asarray(out),
            arr[..., :3] if mode == "RGBA" else arr,
        )
