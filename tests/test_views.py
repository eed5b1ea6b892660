import torch

from vmcli.views import color_jitter, random_resized_crop, simclr_image_views


def test_simclr_views_shape_range_and_seed():
    x = (torch.rand(6, 3, 20, 20) * 255).to(torch.uint8)
    a = simclr_image_views(x, torch.Generator().manual_seed(0))
    b = simclr_image_views(x, torch.Generator().manual_seed(0))
    c = simclr_image_views(x, torch.Generator().manual_seed(1))
    assert a.shape == (6, 3, 20, 20) and a.dtype == torch.float32
    assert a.min() >= 0 and a.max() <= 1
    assert torch.equal(a, b) and not torch.equal(a, c)


def test_randomness_is_per_sample():
    x = torch.rand(1, 3, 16, 16).expand(8, 3, 16, 16).contiguous()
    v = simclr_image_views(x, torch.Generator().manual_seed(0))
    assert len({round(float(s), 5) for s in v.sum(dim=(1, 2, 3))}) == 8


def test_full_crop_without_flip_is_identity():
    x = torch.rand(2, 1, 12, 12)
    out = random_resized_crop(
        x, torch.Generator().manual_seed(0), scale=(1.0, 1.0), ratio=(1.0, 1.0), flip_p=0.0
    )
    torch.testing.assert_close(out, x, atol=1e-5, rtol=0)


def test_grayscale_images_get_brightness_and_contrast_only():
    """On one channel, jitter is an affine map of each image (brightness scales, contrast
    stretches about the mean): no saturation or hue step mixes pixels differently."""
    x = 0.4 + 0.2 * torch.rand(16, 1, 8, 8, generator=torch.Generator().manual_seed(3))
    out = color_jitter(x, torch.Generator().manual_seed(0), p=1.0)
    assert out.shape == x.shape
    slopes = set()
    for xi, oi in zip(x.flatten(1), out.flatten(1), strict=True):
        a = torch.stack([xi, torch.ones_like(xi)], dim=1)
        coef = torch.linalg.lstsq(a, oi[:, None]).solution
        assert torch.allclose(a @ coef, oi[:, None], atol=1e-5)  # exactly affine
        slopes.add(round(float(coef[0]), 4))
    assert len(slopes) == 16 and 1.0 not in slopes  # a strength per image, never the identity


def test_the_crop_grid_stays_fp32_under_bf16_autocast():
    """Autocast would compute affine_grid in bf16 (sampling points off by up to 0.4 px at
    224 px); the grid is built in fp32 and only then cast to the pixels' dtype."""
    from vmcli.views import crop_grid

    g = torch.Generator().manual_seed(0)
    theta = torch.rand(4, 2, 3, generator=g)
    x = torch.rand(4, 3, 224, 224, generator=g)
    exact = torch.nn.functional.affine_grid(theta, list(x.shape), align_corners=False)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        grid = crop_grid(theta, x)
    assert grid.dtype == torch.float32
    torch.testing.assert_close(grid, exact, atol=1e-6, rtol=0)
