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
    x = torch.rand(4, 1, 8, 8)
    out = color_jitter(x, torch.Generator().manual_seed(0), p=1.0)
    assert out.shape == x.shape and not torch.equal(out, x)
