from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from vmcli.data import MODALITIES, LoadOptions, scan
from vmcli.data import image as IM
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


@pytest.mark.parametrize("channels", [1, 3])
@pytest.mark.parametrize(
    "name,make",
    [
        ("w.png", lambda r: r.integers(0, 65535, (12, 14), dtype=np.uint16)),
        ("i.tif", lambda r: r.integers(0, 2**30, (12, 14), dtype=np.int32)),
        ("f.tif", lambda r: (r.normal(size=(12, 14)) * 500).astype(np.float32)),
    ],
)
def test_write_keeps_wide_images_in_their_bit_depth_and_units(tmp_path, name, make, channels):
    """16-bit, 32-bit and float images stay so, in their own units, whatever the run's channels
    (an RGB run used to write them as 8-bit L; a gray run rescaled floats to 16 bits)."""
    arr = make(np.random.default_rng(2))
    src = tmp_path / name
    Image.fromarray(arr).save(src)
    sample = M.read_file(src, {"channels": channels, "size": 8}, LoadOptions())
    assert sample.raw.dtype == torch.float32 and sample.raw.shape == (1, channels, 12, 14)
    dst = tmp_path / "out" / name
    dst.parent.mkdir()
    M.write_file(sample.raw, sample, dst)  # the identity view: the input's values come back
    out = Image.open(dst)
    assert out.mode == Image.open(src).mode and out.size == (14, 12)
    spread = float(arr.max()) - min(0.0, float(arr.min()))
    assert np.allclose(np.asarray(out).astype(np.float64), arr, rtol=0, atol=spread * 1e-6 + 0.5)
    assert sample.context["notes"] == []


def test_float_images_keep_their_no_data_pixels(tmp_path):
    """NaN (no-data) pixels of a float image are read at the range's low end, so the view is
    finite, and are NaN again, in the same places, in the written view; vm says so."""
    arr = (np.random.default_rng(3).random((12, 14)) * 40).astype(np.float32)
    arr[2:5, 3:9] = np.nan
    src = tmp_path / "depth.tif"
    Image.fromarray(arr).save(src)
    sample = M.read_file(src, {"channels": 1, "size": 8}, LoadOptions())
    assert torch.isfinite(sample.raw).all()
    dst = tmp_path / "out.tif"
    M.write_file(sample.raw, sample, dst)
    out = np.asarray(Image.open(dst))
    assert np.array_equal(np.isnan(out), np.isnan(arr))
    assert np.allclose(out[~np.isnan(arr)], arr[~np.isnan(arr)], atol=1e-3)
    assert any("NaN pixels" in note for note in sample.context["notes"])


def test_infinite_pixels_are_read_at_the_range_ends_and_said(tmp_path):
    """±inf in a float image: the view is finite (made with them at the range's ends), they
    are written as those finite values, and the note says so (it was silent)."""
    from vmcli.data.image import INF_NOTE

    arr = (np.random.default_rng(4).random((12, 14)) * 40).astype(np.float32)
    arr[0, 0], arr[5, 5] = np.inf, -np.inf
    src = tmp_path / "depth.tif"
    Image.fromarray(arr).save(src)
    sample = M.read_file(src, {"channels": 1, "size": 8}, LoadOptions())
    assert torch.isfinite(sample.raw).all()
    assert sample.context["notes"] == [INF_NOTE]
    dst = tmp_path / "out.tif"
    M.write_file(sample.raw, sample, dst)
    out = np.asarray(Image.open(dst))
    finite = np.isfinite(arr)
    assert np.isfinite(out).all() and np.allclose(out[finite], arr[finite], atol=1e-3)
    assert out[0, 0] == pytest.approx(arr[finite].max(), abs=1e-3)  # the top of the range
    assert out[5, 5] == pytest.approx(0.0, abs=1e-3)  # the bottom (0 for a positive image)


def test_alpha_moves_with_learned_crops_and_flips(rgb_folder, tmp_path):
    """With learned transforms (the image default) a view is a crop of the input, maybe
    flipped: its alpha channel is moved the same way, so it still covers the same content
    (it was copied from the input unchanged, out of line with every cropped view)."""
    from conftest import fast_config

    from vmcli.augment import augment_folder
    from vmcli.session import train

    cfg = fast_config(rgb_folder, views="learned-transforms", budget=None)
    run = train(cfg, out=tmp_path / "runs", progress=False)["run"]
    data = tmp_path / "cutouts"
    data.mkdir()
    yy, xx = np.mgrid[:24, :24]
    for i, (y0, x0) in enumerate([(2, 3), (9, 12), (4, 14)]):
        mask = ((yy >= y0) & (yy < y0 + 8) & (xx >= x0) & (xx < x0 + 6)).astype(np.uint8) * 255
        rgba = np.stack([mask, mask, mask, mask], axis=-1)  # a white patch, opaque only there
        Image.fromarray(rgba, "RGBA").save(data / f"{i}.png")
    augment_folder(
        data, tmp_path / "views", Path(run), device="cpu", progress=False, views_per_input=4
    )
    moved = 0
    for out in sorted((tmp_path / "views").rglob("*.png")):
        view = np.asarray(Image.open(out).convert("RGBA")).astype(np.int32)
        grey, alpha = view[..., :3].mean(-1), view[..., 3]
        opaque, clear = alpha >= 230, alpha <= 25
        assert opaque.any() and clear.any()
        # the colour jitter is monotone on grey pixels: the patch stays the brightest part
        assert grey[opaque].min() >= grey[clear].max(), out.name
        src = np.asarray(Image.open(data / f"{out.stem.split('_')[0]}.png"))[..., 3]
        moved += not np.array_equal(alpha, src)
    assert moved > 0  # the views were cropped or flipped, and the alpha with them


def test_learned_views_with_planes_are_the_views_without_them():
    """Carrying an alpha plane along draws no extra random numbers: the same seed gives the
    same view with or without one."""
    from vmcli.nn.transforms import ImageTransforms

    t = ImageTransforms()
    x = torch.rand(3, 3, 12, 14)
    plain = t(x, torch.Generator().manual_seed(5))
    view, planes = t.with_planes(x, torch.rand(3, 2, 12, 14), torch.Generator().manual_seed(5))
    assert torch.equal(view, plain) and planes.shape == (3, 2, 12, 14)


def test_planes_keep_their_values_as_they_move():
    """Planes (alpha, masks, label maps) are moved by nearest-neighbour sampling: a 0/1 mask
    stays 0/1 and labels stay labels (bilinear crops made new values: a {0, 255} alpha came
    back with 46, 130...)."""
    from vmcli.nn.transforms import ImageTransforms

    t = ImageTransforms()
    labels = torch.randint(0, 5, (4, 1, 24, 24)).float()
    mask = (torch.rand(4, 1, 24, 24) < 0.5).float()
    _, moved = t.with_planes(torch.rand(4, 3, 24, 24), torch.cat([labels, mask], 1))
    assert set(moved[:, 0].unique().tolist()) <= set(range(5))
    assert set(moved[:, 1].unique().tolist()) <= {0.0, 1.0}
    assert not torch.equal(moved, torch.cat([labels, mask], 1))  # cropped and flipped


def test_planes_that_do_not_fit_the_batch_are_one_error_line(rgb_folder, tmp_path):
    from conftest import fast_config

    import vmcli
    from vmcli.session import train

    cfg = fast_config(rgb_folder, views="learned-transforms", budget=None)
    augment = vmcli.load_viewmaker(train(cfg, out=tmp_path / "runs", progress=False)["run"])
    x = torch.rand(2, 3, 20, 20)
    with pytest.raises(DataError, match=r"planes must be B × K × 20 × 20 .*got \(2, 1, 20, 19\)"):
        augment.with_planes(x, torch.rand(2, 1, 20, 19))
    view, moved = augment.with_planes(x, torch.ones(2, 1, 20, 20))
    assert view.shape == x.shape and torch.allclose(moved, torch.ones(2, 1, 20, 20))


def _palette_with_transparency(r):
    img = Image.fromarray(r.integers(0, 255, (12, 14, 3), dtype=np.uint8)).convert(
        "P", palette=Image.Palette.ADAPTIVE, colors=16
    )
    img.info["transparency"] = 3
    return img


@pytest.mark.parametrize("channels", [1, 3])
@pytest.mark.parametrize(
    "name,make",
    [
        (
            "bw.png",
            lambda r: Image.fromarray(r.integers(0, 2, (12, 14), dtype=np.uint8) * 255).convert(
                "1"
            ),
        ),
        (
            "pal.png",
            lambda r: Image.fromarray(r.integers(0, 255, (12, 14, 3), dtype=np.uint8)).convert(
                "P", palette=Image.Palette.ADAPTIVE, colors=16
            ),
        ),
        ("trans.png", _palette_with_transparency),
        ("pal.gif", _palette_with_transparency),
        (
            "cmyk.jpg",
            lambda r: Image.fromarray(r.integers(0, 255, (12, 14, 3), dtype=np.uint8)).convert(
                "CMYK"
            ),
        ),
        (
            "lab.tif",
            lambda r: Image.fromarray(r.integers(0, 255, (12, 14, 3), dtype=np.uint8)).convert(
                "LAB"
            ),
        ),
    ],
)
def test_write_converts_views_back_to_the_inputs_mode(tmp_path, name, make, channels):
    """1-bit, palette (own palette, transparent pixels kept), CMYK and LAB images are written
    in their own mode, not as L / RGB / RGBA."""
    img = make(np.random.default_rng(3))
    src = tmp_path / name
    img.save(
        src, transparency=img.info["transparency"]
    ) if "transparency" in img.info else img.save(src)
    before = Image.open(src)
    sample = M.read_file(src, {"channels": channels, "size": 8}, LoadOptions())
    dst = tmp_path / "out" / name
    dst.parent.mkdir()
    M.write_file(sample.raw.float() / 255, sample, dst)  # the identity view
    out = Image.open(dst)
    assert out.mode == before.mode and out.size == before.size
    if before.mode == "P":  # colours of the input's own palette (GIF may reorder it)
        colours = {tuple(c) for c in np.asarray(before.getpalette()).reshape(-1, 3).tolist()}
        assert {tuple(c) for c in np.asarray(out.convert("RGB")).reshape(-1, 3).tolist()} <= colours
    if "transparency" in before.info:  # the same pixels stay transparent
        alpha = lambda im: np.asarray(im.convert("RGBA"))[..., 3]  # noqa: E731
        assert np.array_equal(alpha(out), alpha(before))
    if before.mode in ("1", "P") and (channels == 3 or name == "bw.png"):  # identity view
        assert np.array_equal(np.asarray(out.convert("RGB")), np.asarray(before.convert("RGB")))


def test_augment_warns_once_with_a_count_when_frames_or_colour_cannot_be_kept(
    image_folder, tmp_path, capsys
):
    from conftest import fast_config

    from vmcli.augment import augment_folder
    from vmcli.session import train

    run = train(fast_config(image_folder), out=tmp_path / "runs", progress=False)["run"]  # gray
    data = tmp_path / "mixed"
    data.mkdir()
    rng = np.random.default_rng(4)
    rgb = [Image.fromarray(rng.integers(0, 255, (16, 16, 3), dtype=np.uint8)) for _ in range(5)]
    for i in range(3):
        rgb[i].save(data / f"c{i}.png")
    frames = [im.convert("P") for im in rgb[2:]]
    frames[0].save(data / "anim.gif", save_all=True, append_images=frames[1:], duration=100)
    assert Image.open(data / "anim.gif").n_frames == 3
    result = augment_folder(data, tmp_path / "views", Path(run), device="cpu", progress=False)
    err = capsys.readouterr().err
    assert err.count("several frames") == 1 and "1 file(s) have several frames" in err
    assert err.count("trained on grayscale") == 1 and "4 file(s) are in colour" in err
    assert sorted(result["notes"][next(n for n in result["notes"] if "frames" in n)]) == [
        "anim.gif"
    ]
    assert Image.open(tmp_path / "views" / "c0.png").mode == "RGB"  # the input's mode


def _png_rgb16(path: Path, pixels: np.ndarray) -> None:
    """A 16-bit RGB PNG, written by hand: Pillow cannot write one."""
    import struct
    import zlib

    h, w, _ = pixels.shape
    rows = b"".join(b"\x00" + pixels[y].astype(">u2").tobytes() for y in range(h))

    def chunk(kind: bytes, data: bytes) -> bytes:
        crc = zlib.crc32(kind + data) & 0xFFFFFFFF
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", crc)

    header = struct.pack(">IIBBBBB", w, h, 16, 2, 0, 0, 0)
    path.write_bytes(
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(rows))
        + chunk(b"IEND", b"")
    )


def test_augment_says_when_16_bit_colour_is_read_and_written_with_8_bits(
    rgb_folder, tmp_path, capsys
):
    """Pillow opens 16-bit RGB PNGs as 8-bit RGB without a word: vm says so, per file."""
    from conftest import fast_config

    from vmcli.augment import augment_folder
    from vmcli.session import train

    run = train(fast_config(rgb_folder), out=tmp_path / "runs", progress=False)["run"]
    data = tmp_path / "deep"
    data.mkdir()
    rng = np.random.default_rng(6)
    _png_rgb16(data / "deep.png", rng.integers(0, 65536, (16, 16, 3)))
    Image.fromarray(rng.integers(0, 255, (16, 16, 3), dtype=np.uint8)).save(data / "plain.png")
    before = (data / "deep.png").read_bytes()
    result = augment_folder(data, tmp_path / "views", Path(run), device="cpu", progress=False)
    err = capsys.readouterr().err
    assert "1 file(s) have more than 8 bits per colour channel" in err
    [note] = [n for n in result["notes"] if "8 bits" in n]
    assert result["notes"][note] == ["deep.png"]
    assert Image.open(tmp_path / "views" / "deep.png").mode == "RGB"
    assert (data / "deep.png").read_bytes() == before  # the input is untouched


def test_eval_on_colour_images_of_a_gray_run_says_they_are_read_as_gray(
    image_folder, tmp_path, capsys
):
    from conftest import fast_config

    from vmcli.evaluation import evaluate
    from vmcli.session import train

    run = train(fast_config(image_folder), out=tmp_path / "runs", progress=False)["run"]  # gray
    data = tmp_path / "colour"
    rng = np.random.default_rng(5)
    for label in ("a", "b"):
        for i in range(5):
            (data / label).mkdir(parents=True, exist_ok=True)
            img = rng.integers(0, 255, (16, 16, 3), dtype=np.uint8)
            Image.fromarray(img).save(data / label / f"{i}.png")
    capsys.readouterr()
    result = evaluate(Path(run), data, device="cpu")
    err = " ".join(capsys.readouterr().err.split())
    assert "10 file(s) are in colour but the run was trained on grayscale images" in err
    assert "(a/0.png, a/1.png, a/2.png, and 7 more)" in err
    assert result["test_samples"] + result["train_samples"] == 10


def test_training_says_which_files_have_frames_or_no_data_pixels(tmp_path, capsys):
    """Training uses a multi-frame file's first frame and reads a float image's NaN pixels at
    the range's low end: each said once, with a count and the file names."""
    data = tmp_path / "data"
    data.mkdir()
    rng = np.random.default_rng(5)
    for i in range(3):
        Image.fromarray(rng.integers(0, 255, (16, 16), dtype=np.uint8)).save(data / f"g{i}.png")
    frames = [Image.fromarray(rng.integers(0, 255, (16, 16), dtype=np.uint8)) for _ in range(3)]
    frames[0].save(data / "anim.gif", save_all=True, append_images=frames[1:], duration=100)
    depth = (rng.random((16, 16)) * 40).astype(np.float32)
    Image.fromarray(depth).save(data / "whole.tif")  # float, no NaN: not named
    depth[3:6, 2:9] = np.nan
    Image.fromarray(depth).save(data / "holes.tif")
    depth = np.nan_to_num(depth, nan=1.0)
    depth[0, 0], depth[1, 1] = np.inf, -np.inf
    Image.fromarray(depth).save(data / "infinite.tif")
    index = scan(data, MODALITIES)
    capsys.readouterr()
    meta, usable, skipped = M.plan(index.root, index.items, LoadOptions())
    err = " ".join(capsys.readouterr().err.split())
    assert len(usable) == 7 and not skipped
    assert "1 file(s) have several frames" in err and "anim.gif" in err
    assert "1 file(s) have NaN pixels" in err and "holes.tif" in err
    assert "1 file(s) have infinite pixels: they are read at the range's ends" in err
    assert "infinite.tif" in err
    assert "whole.tif" not in err and "g0.png" not in err
    data_all = M.decode_all(index.root, usable, meta, skipped, len(index.items))
    assert torch.isfinite(data_all.x.float()).all()


def test_gray_folder_whose_only_colour_file_fails_to_decode_is_trained_gray(tmp_path, capsys):
    """The channel count is planned from headers; a colour file whose header reads but whose
    pixels do not (truncated) must not turn a gray folder into three equal channels, whether
    the folder is decoded into memory or streamed."""
    from vmcli.config import TrainConfig
    from vmcli.session import load_training_data

    rng = np.random.default_rng(0)
    gray = tmp_path / "gray"
    gray.mkdir()
    for i, mode in enumerate(("L", "L", "LA", "1")):
        arr = rng.integers(0, 255, (18, 22, 2) if mode == "LA" else (18, 22), dtype=np.uint8)
        Image.fromarray(arr, "LA" if mode == "LA" else "L").convert(mode).save(gray / f"{i}.png")
    expected = load(gray, image_size=16)
    assert expected.meta == {"size": 16, "channels": 1}

    mixed = tmp_path / "mixed"
    mixed.mkdir()
    for p in sorted(gray.iterdir()):
        (mixed / p.name).write_bytes(p.read_bytes())
    colour = tmp_path / "colour.png"
    Image.fromarray(rng.integers(0, 255, (64, 64, 3), dtype=np.uint8)).save(colour)
    body = colour.read_bytes()
    (mixed / "9-colour.png").write_bytes(body[: len(body) // 2])  # header intact, pixels cut
    capsys.readouterr()

    data = load(mixed, image_size=16)  # the in-memory path
    assert data.meta == {"size": 16, "channels": 1}
    assert [p.name for p, _ in data.skipped] == ["9-colour.png"]
    assert torch.equal(data.x, expected.x)  # exactly what a gray read gives
    assert "the only colour files could not be decoded" in capsys.readouterr().err

    index = scan(mixed, MODALITIES)  # `vm train`'s default path (plan, then decode when it fits)
    cfg = TrainConfig(data=str(mixed), load=LoadOptions(image_size=16), data_mode="auto")
    trained = load_training_data(cfg, M, index)
    assert trained.meta == {"size": 16, "channels": 1}
    assert torch.equal(trained.source, expected.x) and torch.equal(trained.sample, expected.x)
    streamed = load_training_data(  # streamed from disk: decided before any batch is read
        TrainConfig(data=str(mixed), load=LoadOptions(image_size=16), data_mode="stream"),
        M,
        index,
    )
    assert streamed.meta == {"size": 16, "channels": 1}
    assert [p.name for p, _ in streamed.skipped] == ["9-colour.png"]
    assert torch.equal(streamed.sample, expected.x)

    # a colour file that decodes keeps the folder in colour
    Image.fromarray(rng.integers(0, 255, (18, 22, 3), dtype=np.uint8)).save(mixed / "8-ok.png")
    assert load(mixed, image_size=16).meta["channels"] == 3
    # a resume plans the same files as the run it continues (the broken one left out), so
    # a streamed run and its resume draw the same batches
    (mixed / "8-ok.png").unlink()
    _, usable, skipped = M.plan(
        mixed, scan(mixed, MODALITIES).items, LoadOptions(), {"size": 16, "channels": 1}
    )
    assert [p.name for p, _ in skipped] == ["9-colour.png"] and len(usable) == 4
    Image.fromarray(rng.integers(0, 255, (18, 22, 3), dtype=np.uint8)).save(mixed / "8-ok.png")
    # and a run's shape is never changed (resume, `vm eval --data`)
    kept = M.load(mixed, scan(mixed, MODALITIES).items, LoadOptions(), {"size": 16, "channels": 3})
    assert kept.meta["channels"] == 3


def test_views_are_encoded_like_their_inputs(tmp_path):
    """A JPEG view is written with its input's quantisation tables and subsampling (a fixed
    quality 95 tripled a quality-75 file), and the ICC profile, DPI and TIFF compression are
    kept (all were dropped)."""
    from PIL import ImageCms

    yy, xx = np.mgrid[:96, :128]
    smooth = np.stack([(xx * 2) % 256, (yy * 2) % 256, (xx + yy) % 256], -1).astype(np.uint8)
    icc = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()
    cases = {
        "q75.jpg": {"quality": 75, "subsampling": 2, "dpi": (300, 300), "icc_profile": icc},
        "a.png": {"dpi": (150, 150), "icc_profile": icc},
        "lzw.tif": {"compression": "tiff_lzw", "dpi": (72, 72)},
    }
    for name, opts in cases.items():
        src = tmp_path / name
        Image.fromarray(smooth).save(src, **opts)
        sample = M.read_file(src, {"channels": 3, "size": 16}, LoadOptions())
        dst = tmp_path / f"view-{name}"
        view = (sample.raw.float() / 255 + 0.02).clamp(0, 1)  # a small, smooth change
        M.write_file(view, sample, dst)
        with Image.open(src) as a, Image.open(dst) as b:
            assert b.format == a.format and b.size == a.size and b.mode == a.mode
            assert b.info.get("icc_profile") == a.info.get("icc_profile")
            assert tuple(round(float(d)) for d in b.info["dpi"]) == opts["dpi"]
            if name.endswith(".jpg"):
                assert b.quantization == a.quantization
                from PIL import JpegImagePlugin

                assert JpegImagePlugin.get_sampling(b) == JpegImagePlugin.get_sampling(a)
                assert dst.stat().st_size < 1.3 * src.stat().st_size
            if name.endswith(".tif"):
                assert b.info.get("compression") == "tiff_lzw"


def test_views_keep_exif_text_chunks_and_lossless_webp(tmp_path):
    """EXIF (camera, time) and PNG text chunks are kept, without the orientation (the view is
    stored upright); a lossless WebP's view is lossless (all three were dropped: a lossless
    WebP came back lossy)."""
    from PIL import PngImagePlugin

    yy, xx = np.mgrid[:40, :60]
    img = Image.fromarray(np.stack([xx * 4, yy * 4, xx + yy], -1).astype(np.uint8))
    exif = Image.Exif()
    exif.update({0x0112: 6, 0x010F: "Acme", 0x0132: "2026:01:01 00:00:00"})  # turned 90°
    text = PngImagePlugin.PngInfo()
    text.add_text("Author", "me")
    cases = {
        "turned.jpg": {"exif": exif, "quality": 80},
        "text.png": {"exif": exif, "pnginfo": text},
        "lossless.webp": {"exif": exif, "lossless": True},
        "lossy.webp": {"quality": 60},
    }
    for name, opts in cases.items():
        src = tmp_path / name
        img.save(src, **opts)
        sample = M.read_file(src, {"channels": 3, "size": 16}, LoadOptions())
        upright = (60, 40) if "exif" in opts else (40, 60)  # turned: 40 wide, 60 high
        assert sample.raw.shape[2:] == upright, name
        dst = tmp_path / f"view-{name}"
        M.write_file((sample.raw.float() / 255 + 0.02).clamp(0, 1), sample, dst)
        with Image.open(dst) as b:
            assert b.size == upright[::-1], name
            got = dict(b.getexif())
            if "exif" in opts:
                assert got == {0x010F: "Acme", 0x0132: "2026:01:01 00:00:00"}, name
            if name.endswith(".png"):
                assert b.text == {"Author": "me"}
        if name.endswith(".webp"):
            assert (
                IM._webp_is_lossless(dst) == IM._webp_is_lossless(src) == (name == "lossless.webp")
            )
    assert IM._webp_is_lossless(tmp_path / "turned.jpg") is False


def test_augment_skips_a_png_whose_pixel_data_is_corrupt(rgb_folder, tmp_path):
    """A PNG with a damaged IDAT is skipped by name, as `vm train` skips it (reading its EXIF
    first once swallowed the decode error and wrote a black view with exit 0)."""
    from conftest import fast_config

    from vmcli.augment import augment_folder
    from vmcli.session import train

    run = train(fast_config(rgb_folder), out=tmp_path / "runs", progress=False)["run"]
    data = tmp_path / "data"
    data.mkdir()
    Image.fromarray(np.full((32, 32, 3), 200, np.uint8)).save(data / "fine.png")
    raw = bytearray((data / "fine.png").read_bytes())
    at = raw.find(b"IDAT") + 4
    raw[at], raw[at + 1] = raw[at] ^ 255, raw[at + 1] ^ 255
    (data / "corrupt.png").write_bytes(bytes(raw))
    result = augment_folder(data, tmp_path / "views", Path(run), device="cpu", progress=False)
    assert sorted(p.name for p in (tmp_path / "views").iterdir()) == ["fine.png"]
    assert [Path(p).name for p, _ in result["skipped"]] == ["corrupt.png"]


def _fits(path: Path, values: np.ndarray) -> None:
    """A float FITS file (the image library reads FITS but cannot write it)."""
    h, w = values.shape
    cards = ["SIMPLE  =                    T", "BITPIX  =                  -32"]
    cards += ["NAXIS   =                    2", f"NAXIS1  = {w:20d}", f"NAXIS2  = {h:20d}", "END"]
    data = values[::-1].astype(">f4").tobytes()  # FITS rows go bottom-up
    path.write_bytes(
        "".join(c.ljust(80) for c in cards).ljust(2880).encode() + data + bytes(-len(data) % 2880)
    )


def _psd_lab(path: Path, img: Image.Image) -> None:
    """A LAB Photoshop file (read-only for the image library), raw planes."""
    import struct

    planes = np.asarray(img).transpose(2, 0, 1)
    c, h, w = planes.shape
    head = b"8BPS" + struct.pack(">H6xHIIHH", 1, c, h, w, 8, 9) + bytes(12) + bytes(2)
    path.write_bytes(head + planes.tobytes())


def test_views_are_written_in_the_inputs_real_format_whatever_its_name(tmp_path):
    """A file whose extension lies is written in its content's format under its own name (a
    16-bit PNG named .jpg became a white JPEG, float TIFFs named .jpg/.webp/.gif black, an
    RGBA PNG named .jpg lost its alpha, a LAB TIFF named .png became RGBA). A format the image
    library only reads goes by the name; a float image that must become 8-bit is scaled
    (not clipped), and its NaN are not promised back."""
    rng = np.random.default_rng(7)
    f32 = (rng.random((12, 14)) * 900 - 100).astype(np.float32)
    holes = f32.copy()
    holes[2:4, 3:6] = np.nan
    rgba = rng.integers(0, 255, (12, 14, 4), dtype=np.uint8)
    lab = Image.fromarray(rng.integers(0, 255, (12, 14, 3), dtype=np.uint8)).convert("LAB")
    u16 = rng.integers(0, 65535, (12, 14), dtype=np.uint16)
    i32 = rng.integers(0, 2**30, (12, 14), dtype=np.int32)
    inputs = {  # name: (write it, format and mode of the view)
        "i16_png.jpg": (lambda p: Image.fromarray(u16).save(p, "PNG"), "PNG", "I;16"),
        "f_tif.jpg": (lambda p: Image.fromarray(f32).save(p, "TIFF"), "TIFF", "F"),
        "f_tif.webp": (lambda p: Image.fromarray(f32).save(p, "TIFF"), "TIFF", "F"),
        "f_tif.gif": (lambda p: Image.fromarray(f32).save(p, "TIFF"), "TIFF", "F"),
        "i_tif.webp": (lambda p: Image.fromarray(i32).save(p, "TIFF"), "TIFF", "I"),
        "nan_tif.png": (lambda p: Image.fromarray(holes).save(p, "TIFF"), "TIFF", "F"),
        "rgba_png.jpg": (lambda p: Image.fromarray(rgba).save(p, "PNG"), "PNG", "RGBA"),
        "lab_tif.png": (lambda p: lab.save(p, "TIFF"), "TIFF", "LAB"),
        "mpo.png": (
            lambda p: Image.fromarray(rgba[..., :3]).save(p, "MPO", save_all=True),
            "JPEG",
            "RGB",
        ),
        "fits.png": (lambda p: _fits(p, holes), "PNG", "L"),  # read-only: the name's format
        "fits.jpg": (lambda p: _fits(p, f32), "JPEG", "L"),
        "lab_psd.png": (lambda p: _psd_lab(p, lab), "PNG", "RGB"),  # no alpha to invent
    }
    for name, (make, fmt, mode) in inputs.items():
        src, dst = tmp_path / name, tmp_path / "out" / name
        make(src)
        dst.parent.mkdir(exist_ok=True)
        sample = M.read_file(src, {"channels": 3, "size": 8}, LoadOptions())
        view = sample.raw if sample.context["wide"] else sample.raw.float() / 255  # identity
        M.write_file(view, sample, dst)
        with Image.open(src) as a, Image.open(dst) as b:
            assert (b.format, b.mode, b.size) == (fmt, mode, a.size), name
            got, want = np.asarray(b).astype(np.float64), np.asarray(a).astype(np.float64)
        if mode in ("I;16", "I", "F", "RGBA"):  # lossless: the input's values back
            assert np.array_equal(np.isnan(got), np.isnan(want)), name
            assert np.allclose(got[~np.isnan(want)], want[~np.isnan(want)], atol=0.5), name
        if name.startswith("fits"):  # scaled by the range, as training reads it
            unit = (np.nan_to_num(want, nan=-100) + 100) / (np.nanmax(want) + 100)
            assert np.abs(got - unit * 255).mean() < 2, name
        said = {"nan_tif.png": [IM.NAN_NOTE], "fits.png": ["written as L, not F like the input"]}
        said["fits.jpg"] = said["fits.png"]
        said["lab_psd.png"] = ["written as RGB, not LAB like the input"]
        assert sample.context["notes"] == said.get(name, []), name


@pytest.mark.parametrize("channels", [1, 3])
@pytest.mark.parametrize(
    "mode,key",
    [("RGB", (10, 20, 30)), ("L", 0), ("L", 255), ("1", 0), ("I;16", 1000)],
)
def test_a_transparent_key_colour_is_kept(tmp_path, mode, key, channels):
    """RGB, L, 1-bit and 16-bit gray PNGs that mark one colour transparent (tRNS) keep it:
    the same pixels are transparent, with exactly the key colour, and opaque pixels a view
    pushed onto the key move one level off it, so they stay opaque (all were made opaque,
    without a word)."""
    rng = np.random.default_rng(8)
    shape = (12, 14, 3) if mode == "RGB" else (12, 14)
    top = 65535 if mode == "I;16" else 255
    px = rng.integers(0, top + 1, shape).astype(np.uint16 if mode == "I;16" else np.uint8)
    if mode == "1":
        px = px >= 128
    clear = rng.random((12, 14)) < 0.3
    px[clear] = bool(key) if mode == "1" else key
    hit = np.asarray(key).reshape(-1) == px.reshape(12, 14, -1)
    clear |= hit.all(-1)  # pixels equal to the key are transparent too
    src = tmp_path / "keyed.png"
    Image.fromarray(px).save(src, transparency=key)
    with Image.open(src) as before:
        assert before.mode == mode and before.info["transparency"] == key
    sample = M.read_file(src, {"channels": channels, "size": 8}, LoadOptions())
    view = sample.raw.clone() if sample.context["wide"] else sample.raw.float() / 255
    gray_run = mode == "RGB" and channels == 1  # gray views: cannot land on (10, 20, 30)
    landed = (~clear) & (rng.random((12, 14)) < 0.3) & (not gray_run)
    if not gray_run:  # some opaque pixels exactly onto the key
        target = torch.tensor(key, dtype=torch.float32).view(-1, 1) / (1 if mode == "1" else top)
        view[0][:, torch.from_numpy(landed)] = target.expand(view.shape[1], -1)
    dst = tmp_path / "view.png"
    M.write_file(view, sample, dst)
    with Image.open(dst) as out:
        assert out.format == "PNG" and out.mode == mode and out.info["transparency"] == key
        got = np.asarray(out).reshape(12, 14, -1)
    on_key = (got == np.asarray(key, dtype=got.dtype)).all(-1)
    assert np.array_equal(on_key, clear)  # transparent: exactly the input's pixels
    off = np.abs(got[landed].astype(int) - np.asarray(int(key) if mode == "1" else key))
    assert (off.sum(-1) == 1).all()  # one level off it, opaque
    assert sample.context["notes"] == ([IM.GRAY_RUN_NOTE] if gray_run else [])


@pytest.mark.parametrize("bits", [2, 4])
def test_a_low_bit_gray_pngs_transparent_level_is_read_in_its_pixels_units(tmp_path, bits):
    """A 2- or 4-bit gray PNG's tRNS level is in 0..2^bits − 1, its pixels are read in 0..255:
    unscaled, no pixel matched the key, and the view's key marked another level."""
    import struct
    import zlib

    def chunk(kind, data):
        return (
            struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
        )

    top = 2**bits - 1
    levels = [0, top, top, 1] * 2  # 8 pixels, one row; `top` (white) is transparent
    packed = int("".join(format(v, f"0{bits}b") for v in levels), 2)
    row = packed.to_bytes(len(levels) * bits // 8, "big")
    src = tmp_path / "low.png"
    src.write_bytes(
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", struct.pack(">IIBBBBB", 8, 1, bits, 0, 0, 0, 0))
        + chunk(b"tRNS", struct.pack(">H", top))
        + chunk(b"IDAT", zlib.compress(b"\x00" + row))
        + chunk(b"IEND", b"")
    )
    sample = M.read_file(src, {"channels": 1, "size": 8}, LoadOptions())
    alpha = sample.planes.reshape(-1).numpy()  # 0: transparent
    assert (alpha == 0).tolist() == [v == top for v in levels]
    dst = tmp_path / "view.png"
    M.write_file(sample.raw.float() / 255, sample, dst)
    with Image.open(dst) as out:
        assert out.info["transparency"] == 255
        assert (np.asarray(out)[0] == 255).tolist() == [v == top for v in levels]


def test_a_thin_strip_is_resampled_crop_only(monkeypatch):
    """A 1 × 20000 strip at --image-size 224 was resized whole first, to 224 × 4.5M pixels
    (a MemoryError under a 5 GB limit); now only the centre crop is resampled. Ordinary
    images are still resized whole, so their training inputs are unchanged to the bit."""
    rng = np.random.default_rng(9)
    photo = rng.integers(0, 256, (30, 50, 3), dtype=np.uint8)
    whole = np.asarray(Image.fromarray(photo).resize((37, 22), Image.BICUBIC))[:, 7:29]
    assert np.array_equal(IM._resize_center(photo, 22), whole)

    sizes = []
    resize = Image.Image.resize

    def small_resize(self, size, *args, **kwargs):
        sizes.append(size)
        assert size[0] * size[1] <= 4 * 224 * 224, f"resized to {size}"
        return resize(self, size, *args, **kwargs)

    monkeypatch.setattr(Image.Image, "resize", small_resize)
    strip = np.zeros((1, 20000, 3), np.uint8)
    strip[..., 0] = 255  # red, with a blue centre
    strip[:, 9990:10010] = (0, 0, 255)
    for arr in (strip, strip.transpose(1, 0, 2), strip[..., :1]):
        out = IM._resize_center(np.ascontiguousarray(arr), 224)
        assert out.shape == (224, 224, arr.shape[2])
        assert (out == (0, 0, 255)[: arr.shape[2]]).all()
    assert sizes == [(224, 224)] * 3


def test_image_library_warnings_are_one_vm_line_naming_the_file(
    tmp_path, capsys, monkeypatch, recwarn
):
    """The image library's Python warnings (a very large image; palette transparency in
    bytes) reached stderr as two lines quoting its source, naming no file: now a very large
    image is one vm warning naming it, once per run (the plan says it, decoding does not
    again), and the palette one, whose outcome vm reports itself, is dropped."""
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 200)  # 16 × 16 = 256: "a bomb", not refused
    data = tmp_path / "data"
    data.mkdir()
    rng = np.random.default_rng(10)
    Image.fromarray(rng.integers(0, 255, (16, 16, 3), dtype=np.uint8)).save(data / "big.png")
    pal = Image.fromarray(rng.integers(0, 255, (8, 8, 3), dtype=np.uint8)).convert("P")
    pal.save(data / "alpha.png", transparency=bytes([0, 128] + [255] * 254))
    capsys.readouterr()
    data_all = load(data)
    assert len(data_all) == 2
    err = capsys.readouterr().err
    line = f"warning: {data / 'big.png'}: the image library says: Image size (256 pixels) exceeds"
    assert err.count(line) == 1 and "warnings.warn" not in err and "alpha.png" not in err

    for name in ("big.png", "alpha.png"):
        sample = M.read_file(data / name, {"channels": 3, "size": 8}, LoadOptions())
        M.write_file(sample.raw.float() / 255, sample, tmp_path / name)
    err = capsys.readouterr().err
    assert err.count(line) == 1 and "alpha.png" not in err
    assert [str(w.message) for w in recwarn if "PIL" in w.filename] == []


def test_skip_reasons_say_what_the_library_says_not_its_exception_class(tmp_path):
    """`cannot be read as an image (UnidentifiedImageError: cannot identify image file ...)`:
    the class name is for programmers; the reason keeps the library's words."""
    rng = np.random.default_rng(3)
    for i in range(4):
        Image.fromarray(rng.integers(0, 255, (8, 8), dtype=np.uint8)).save(tmp_path / f"{i}.png")
    (tmp_path / "junk.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"not really" * 3)
    data = load(tmp_path, image_size=8)
    [(path, reason)] = data.skipped
    assert path.name == "junk.png" and reason.startswith("cannot be read as an image (")
    assert "Error:" not in reason and "Error" not in reason.split("(")[1][:30]
