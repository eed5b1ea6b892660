import pytest
import torch

from vmcli.nn.viewmaker import Viewmaker, grad_reverse, project_to_budget, upsample_nearest2x


@pytest.mark.parametrize(
    "shape", [(4, 3, 32, 32), (2, 1, 28, 30), (3, 6, 127), (1, 2, 7, 5), (5, 1, 9)]
)
@pytest.mark.parametrize("budget", [0.01, 0.05, 0.3])
def test_projection_has_exact_mean_abs_budget(shape, budget):
    raw = torch.randn(shape) * 3
    delta = project_to_budget(raw, budget)
    dims = tuple(range(1, len(shape)))
    torch.testing.assert_close(
        delta.abs().mean(dim=dims), torch.full((shape[0],), budget), rtol=1e-5, atol=0
    )
    # direction is tanh(raw): same signs, same ordering
    assert torch.equal(torch.sign(delta), torch.sign(torch.tanh(raw)))


def test_projection_is_float32_under_bf16_input():
    delta = project_to_budget(torch.randn(2, 3, 8, 8).bfloat16(), 0.05)
    assert delta.dtype == torch.float32
    torch.testing.assert_close(delta.abs().mean(dim=(1, 2, 3)), torch.full((2,), 0.05))


@pytest.mark.parametrize(
    "dims,shape", [(2, (3, 3, 28, 30)), (2, (2, 1, 5, 9)), (1, (2, 6, 127)), (1, (2, 2, 3))]
)
def test_viewmaker_keeps_shape_and_budget_for_any_size(dims, shape):
    vm = Viewmaker(channels=shape[1], dims=dims, budget=0.07, width=8)
    x = torch.rand(shape)
    delta = vm.perturbation(x)
    assert delta.shape == x.shape
    red = tuple(range(1, len(shape)))
    torch.testing.assert_close(
        delta.abs().mean(dim=red), torch.full((shape[0],), 0.07), rtol=1e-5, atol=0
    )


def test_images_are_clamped_and_views_differ():
    vm = Viewmaker(channels=3, budget=0.2, width=8, clamp=(0.0, 1.0))
    x = torch.rand(4, 3, 16, 16)
    v1, v2 = vm(x), vm(x)
    assert v1.min() >= 0 and v1.max() <= 1
    assert not torch.allclose(v1, v2), "fresh noise must give a different view on every call"


def test_same_generator_seed_gives_same_views():
    vm = Viewmaker(channels=1, budget=0.05, width=8)
    x = torch.rand(2, 1, 12, 12)
    a = vm(x, generator=torch.Generator().manual_seed(3))
    b = vm(x, generator=torch.Generator().manual_seed(3))
    c = vm(x, generator=torch.Generator().manual_seed(4))
    assert torch.equal(a, b)
    assert not torch.equal(a, c)


def test_paper_architecture_size():
    vm = Viewmaker(channels=3)  # the paper's network: "about 1.1 M parameters"
    n = sum(p.numel() for p in vm.parameters())
    assert 1.05e6 < n < 1.15e6
    assert [b.conv1[1].in_channels for b in vm.res_blocks] == [129, 130, 131]


@pytest.mark.parametrize("dims", [1, 2])
def test_every_parameter_gets_a_gradient(dims):
    vm = Viewmaker(channels=2, dims=dims, width=8)
    x = torch.rand((3, 2, 16) if dims == 1 else (3, 2, 16, 16))
    (vm(x) * torch.randn_like(x)).sum().backward()
    missing = [n for n, p in vm.named_parameters() if p.grad is None or not p.grad.abs().sum() > 0]
    assert not missing


def test_upsample_matches_interpolate():
    for x in (torch.randn(2, 3, 5, 7), torch.randn(2, 3, 9)):
        torch.testing.assert_close(
            upsample_nearest2x(x),
            torch.nn.functional.interpolate(x, scale_factor=2, mode="nearest"),
        )


def test_grad_reverse_negates_gradient_only():
    x = torch.randn(5, requires_grad=True)
    y = grad_reverse(x)
    assert torch.equal(y, x)
    (y * torch.arange(5.0)).sum().backward()
    assert torch.equal(x.grad, -torch.arange(5.0))


def test_invalid_arguments():
    with pytest.raises(ValueError):
        Viewmaker(channels=1, dims=3)
    with pytest.raises(ValueError):
        Viewmaker(channels=1, budget=0)
