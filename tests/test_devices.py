"""The GPU-only branches, checked without a GPU: device resolution, the resident-batch decision,
evaluation baselines with the view space on another device, and throughput variants that do not
share mutated state. (The `meta` device stands in for a GPU where a real copy is not needed.)"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest
import torch

from vmcli import devices
from vmcli.data import base as data_base
from vmcli.data.base import Item, TensorData
from vmcli.data.image import ImageModality, PixelSpace
from vmcli.data.loader import ResidentBatches
from vmcli.devices import (
    auto_precision,
    cpu_computes_bf16,
    module_device,
    resolve_device,
    with_index,
)
from vmcli.errors import ConfigError


@pytest.fixture
def fake_cuda(monkeypatch):
    """PyTorch believes a GPU is there (index 0, 256 MiB free): enough for device decisions."""
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "current_device", lambda: 0)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    monkeypatch.setattr(torch.cuda, "mem_get_info", lambda device=None: (256 << 20, 2 << 30))


def test_cpu_resolves_to_cpu():
    assert resolve_device("cpu") == torch.device("cpu")
    if not torch.cuda.is_available():
        assert resolve_device("auto") == torch.device("cpu")
        with pytest.raises(ConfigError, match="no CUDA GPU"):
            resolve_device("cuda")
    with pytest.raises(ConfigError, match="not a device"):
        resolve_device("gpu-please")
    for known in ("mps", "meta", "xpu"):  # devices PyTorch knows but vm does not run on
        with pytest.raises(ConfigError, match=f"--device '{known}': vm runs on the CPU or a CUDA"):
            resolve_device(known)


def test_a_cuda_index_past_the_visible_gpus_is_refused(fake_cuda):
    with pytest.raises(ConfigError, match=r"--device cuda:3: PyTorch sees 1 CUDA GPU\(s\)"):
        resolve_device("cuda:3")


@pytest.mark.parametrize("name", ["auto", "cuda", "cuda:0"])
def test_cuda_always_resolves_to_an_indexed_device(fake_cuda, name):
    # tensors live on cuda:0, and torch.device("cuda") != torch.device("cuda:0")
    assert resolve_device(name) == torch.device("cuda", 0)
    assert with_index(torch.device("cuda")) == torch.device("cuda", 0)
    assert with_index(torch.device("cpu")) == torch.device("cpu")


def test_resident_batches_decide_by_flag_not_device_equality(fake_cuda):
    big = torch.zeros(1024, 1024, 128, dtype=torch.uint8)  # 128 MiB > a quarter of 256 MiB free
    src = ResidentBatches(big, torch.device("cuda"))
    assert src.device == torch.device("cuda", 0)
    assert not src.resident
    # the host fallback keeps the dataset unpinned (each batch is pinned on its own)
    assert src.x.device.type == "cpu" and not src.x.is_pinned()


def test_resident_batches_on_the_device_gather_without_host_copies(monkeypatch):
    monkeypatch.setattr(
        torch.Tensor, "pin_memory", lambda self: pytest.fail("a resident batch was pinned")
    )
    x = torch.arange(40, dtype=torch.float32).view(10, 1, 4)
    src = ResidentBatches(x, torch.device("meta"))  # stands in for a GPU the data fits on
    assert src.resident and src.x.device.type == "meta"
    batches = list(src.epoch(torch.arange(10, device="meta"), 4, 0))
    assert len(batches) == 2 and all(b.device.type == "meta" for b in batches)


def test_module_device():
    assert module_device(torch.nn.Linear(2, 2)) == torch.device("cpu")
    assert module_device(torch.nn.Linear(2, 2, device="meta")).type == "meta"
    assert module_device(torch.nn.ReLU()) == torch.device("cpu")


def test_raw_baselines_follow_the_space_to_its_device(monkeypatch):
    """`vm eval` moves the shared view space to the GPU to extract features; the raw-input
    baseline must then feed it inputs on that device and bring the features back."""
    seen: list[torch.device] = []
    space = PixelSpace({"channels": 1, "size": 4})
    to_view = space.to_view
    monkeypatch.setattr(space, "to_view", lambda raw: seen.append(raw.device) or to_view(raw))
    monkeypatch.setattr(data_base, "_pool_flat", lambda x: torch.zeros(x.shape[0], 3))
    space.to("meta")
    data = TensorData(
        torch.zeros(6, 1, 4, 4, dtype=torch.uint8), [Item(Path(f"{i}.png")) for i in range(6)], {}
    )
    feats = ImageModality().raw_baselines(data, space)["raw inputs"]
    assert seen and all(d.type == "meta" for d in seen)
    assert feats.device.type == "cpu" and feats.shape == (6, 3)


def _load_throughput():
    path = Path(__file__).resolve().parent.parent / "benchmarks" / "throughput.py"
    spec = importlib.util.spec_from_file_location("bench_throughput", path)
    module = importlib.util.module_from_spec(spec)
    sys.modules["bench_throughput"] = module
    spec.loader.exec_module(module)
    return module


def test_throughput_variants_do_not_share_the_view_space():
    tp = _load_throughput()
    shape = tp.shapes(quick=True)["image"]
    before = dict(shape["space"].stats)
    jobs = [tp.make_job(shape, v, torch.device("cpu"), "small", 8)[0] for v in tp.LADDER[:2]]
    assert jobs[0].space is not jobs[1].space
    jobs[0].space.to("meta")  # what prepare() does to a variant's space on a GPU
    assert module_device(jobs[1].space).type == "cpu"
    assert shape["space"].stats == before  # the shared template is never fitted or moved


def test_throughput_compiled_rows_compile_the_networks():
    """A "compiled" row must time the compiled step, not the eager one under another name."""
    tp = _load_throughput()
    shape = tp.shapes(quick=True)["sensor"]
    compiled = tp.replace(tp.LADDER[1], name="compiled", compile=True, precision="fp32")
    fns = {}
    for variant in (tp.LADDER[1], compiled):
        job = tp.make_job(shape, variant, torch.device("cpu"), "small", 8)[0]
        tp.ready(job)
        fns[variant.name] = job.encoder_fn
    compiled_type = torch._dynamo.eval_frame.OptimizedModule
    assert isinstance(fns["compiled"], compiled_type)
    assert not isinstance(fns[tp.LADDER[1].name], compiled_type)


def test_encoder_shape_probe_runs_on_the_space_device():
    """quality.py and `vm eval` build a random encoder from a space already on the GPU."""
    from vmcli.data.audio import LogMelSpace
    from vmcli.data.sensor import SignalSpace

    spaces = [
        (PixelSpace({"channels": 3, "size": 8}), (3, 8, 8)),
        (LogMelSpace({"sample_rate": 8000, "clip_samples": 4000, "n_mels": 32}), (1, 4000)),
        (SignalSpace({"columns": list("abc"), "window": 32}), (3, 32)),
    ]
    for space, raw_shape in spaces:
        on_cpu = space.encoder_input_shape(raw_shape)
        space.to("meta")
        assert space.encoder_input_shape(raw_shape) == on_cpu


def test_throughput_times_the_learned_transforms_step_of_every_shape():
    """The learned-transforms row (`views auto`) trains each shape's own
    transform family, no viewmaker."""
    tp = _load_throughput()
    for name, family in (("sensor", "sensor"), ("audio", "audio"), ("image", "image")):
        shape = tp.shapes(quick=True)[name]
        variant = tp.Variant("auto", views="learned-transforms")
        job, x, batch = tp.make_job(shape, variant, torch.device("cpu"), "small", 8)
        assert job.viewmaker is None and job.transforms.family == family
        # the budget `vm train` gives the modality on auto: the recipe's total for audio
        expected = tp.get_modality(name).default_transforms_budget
        recipe = tp.create_transforms(name, expected).budget
        assert job.transforms.budget == recipe and (name != "audio" or recipe is not None)
        opt = tp.ready(job)
        before = job.transforms.logits.detach().clone()
        gen = torch.Generator().manual_seed(0)
        tp.train_step(job, x[:batch], gen, opt, torch.autocast("cpu", enabled=False))
        assert not torch.equal(before, job.transforms.logits.detach())  # strengths learn


def test_throughput_times_the_default_first_and_compiles_it_at_both_batches():
    """A short GPU lease may only fit the first rows: they must be the paper's schedule and
    the default step (learned transforms), eager then compiled, at batch 256 and the big batch;
    the other shapes' compiled rows come last."""
    tp = _load_throughput()
    rows = tp.plan_rows(
        ["image", "sensor"], on_cpu=False, compiled_rows=True, big_batch=1024, bf16=True
    )
    first = [(name, v.views, v.compile, v.batch) for name, v in rows[:5]]
    assert first == [
        ("image", "viewmaker", False, None),
        ("image", "learned-transforms", False, None),
        ("image", "learned-transforms", False, 1024),
        ("image", "learned-transforms", True, None),
        ("image", "learned-transforms", True, 1024),
    ]
    assert rows[0][1] is tp.PAPER
    assert rows[-1][0] == "sensor" and rows[-1][1].compile
    assert rows[-1][1].views == "learned-transforms"
    assert all(v.precision == "bf16" and v.channels_last for _, v in rows[1:5])
    assert len({(name, v.name) for name, v in rows}) == len(rows)  # no row timed twice
    assert len(rows) == 11 + 6  # image: 4 ladder + 4 default + 3 viewmaker; sensor: 4 + 2
    # --no-bf16 (CPUs that emulate it): no bf16 row at all, compiled or not
    cpu = tp.plan_rows(["image"], on_cpu=True, compiled_rows=True, big_batch=0, bf16=False)
    assert [v.precision for _, v in cpu] == ["fp32"] * len(cpu)
    assert sum(v.compile for _, v in cpu) == 2  # the default and the viewmaker, compiled


def test_the_cpu_bf16_probe_asks_for_avx512_bf16_or_amx(monkeypatch):
    """Either hardware path counts; a PyTorch without the probes means no (fp32 is safe)."""
    for avx512_bf16, amx, expected in (
        (False, False, False),
        (True, False, True),
        (False, True, True),
    ):
        monkeypatch.setattr(
            torch.cpu, "_is_avx512_bf16_supported", lambda v=avx512_bf16: v, raising=False
        )
        monkeypatch.setattr(torch.cpu, "_is_amx_tile_supported", lambda v=amx: v, raising=False)
        assert cpu_computes_bf16() is expected
    monkeypatch.delattr(torch.cpu, "_is_avx512_bf16_supported", raising=False)
    monkeypatch.delattr(torch.cpu, "_is_amx_tile_supported", raising=False)
    assert cpu_computes_bf16() is False


@pytest.mark.parametrize("native", [False, True])
def test_auto_precision_is_bf16_where_the_hardware_computes_it(monkeypatch, native):
    monkeypatch.setattr(devices, "cpu_computes_bf16", lambda: native)
    assert auto_precision(torch.device("cpu")) == ("bf16" if native else "fp32")
    assert auto_precision(torch.device("cuda", 0)) == "bf16"  # every GPU vm targets


def test_throughput_times_the_cpu_default_in_both_precisions():
    """On a CPU the default step is timed in its auto precision and in the other one, so the
    pair that `--precision auto` rests on is measured side by side; --no-bf16 drops the pair.
    A shape whose modality keeps fp32 on bf16 CPUs (sensors) leads with fp32 there too."""
    tp = _load_throughput()
    cases = (
        ("image", True, "bf16", "fp32"),
        ("image", False, "fp32", "bf16"),
        ("sensor", True, "fp32", "bf16"),
    )
    for shape, native, default, other in cases:
        rows = tp.plan_rows(
            [shape], on_cpu=True, compiled_rows=False, big_batch=0, bf16=True, cpu_bf16=native
        )
        autos = [v for _, v in rows if v.views == "learned-transforms"]
        assert [v.precision for v in autos] == [default, other]
        assert autos[0].name.endswith(default) and autos[1].name.endswith(other)
    rows = tp.plan_rows(["sensor"], on_cpu=True, compiled_rows=False, big_batch=0, bf16=False)
    assert [v.precision for _, v in rows if v.views == "learned-transforms"] == ["fp32"]
