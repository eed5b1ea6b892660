import pytest
import torch
from conftest import fast_config

import vmcli
from vmcli import runs
from vmcli.data import MODALITIES, scan
from vmcli.errors import ConfigError, TrainingInterrupted
from vmcli.losses import nt_xent
from vmcli.nn.transforms import AudioTransforms, ImageTransforms, SensorTransforms
from vmcli.nn.viewmaker import Viewmaker
from vmcli.session import _build_job, _resolve, load_training_data, train
from vmcli.training import Job, fit, make_views


def small_job(folder, **overrides) -> Job:
    cfg = fast_config(folder, **overrides)
    index = scan(folder, MODALITIES)
    modality = MODALITIES[index.modality]
    data = load_training_data(cfg, modality, index)
    cfg = _resolve(cfg, modality, len(data), torch.device("cpu"))
    space = modality.build_space(cfg.view_space, data.meta)
    space.fit(data.sample)
    return _build_job(cfg, modality, data, space, torch.device("cpu"))


def grads(module):
    return {n: p.grad.clone() for n, p in module.named_parameters()}


@pytest.fixture
def single_thread():
    """Multi-threaded CPU reductions are not bitwise reproducible; exact comparisons need one."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


def test_gradient_reversal_gives_viewmaker_exactly_the_negated_gradient(
    image_folder, single_thread
):
    job = small_job(image_folder)
    raw = job.data[:6]

    def backward(reverse):
        job.encoder.zero_grad(set_to_none=True)
        job.viewmaker.zero_grad(set_to_none=True)
        made = make_views(job, raw, torch.Generator().manual_seed(0), reverse=reverse)
        z = job.encoder(job.space.to_encoder(made.views))
        nt_xent(z[:6], z[6:], 0.07).backward()
        return grads(job.viewmaker), grads(job.encoder)

    job.encoder.eval()  # batch-norm statistics must not move between the two passes
    vm_rev, enc_rev = backward(True)
    vm_plain, enc_plain = backward(False)
    for name in vm_plain:
        assert torch.equal(vm_rev[name], -vm_plain[name]), name
    for name in enc_plain:
        assert torch.equal(enc_rev[name], enc_plain[name]), name


def test_fit_trains_and_reports_budget(image_folder):
    job = small_job(image_folder, epochs=2)
    before = [p.detach().clone() for p in job.viewmaker.parameters()]
    result = fit(job, progress=False)
    assert result["delta_l1"] == pytest.approx(0.05, rel=1e-4)
    assert 0 < result["view_l1"] <= 0.05 + 1e-6  # clamping to [0, 1] can only shrink it
    assert len(result["metrics"]) == 2 and all(
        torch.isfinite(torch.tensor(m["loss"])) for m in result["metrics"]
    )
    assert any(
        not torch.equal(a, b) for a, b in zip(before, job.viewmaker.parameters(), strict=True)
    )


def test_bf16_autocast_keeps_the_budget_exact(image_folder):
    job = small_job(image_folder, precision="bf16")
    result = fit(job, progress=False)
    assert result["delta_l1"] == pytest.approx(0.05, rel=1e-4)  # projection runs in float32
    assert torch.isfinite(torch.tensor(result["loss"]))


@pytest.mark.parametrize("views", ["handcrafted", "both", "none"])
def test_other_view_settings_train(image_folder, views):
    job = small_job(image_folder, views=views)
    assert (job.viewmaker is None) == (views in ("handcrafted", "none"))
    result = fit(job, progress=False)
    assert torch.isfinite(torch.tensor(result["loss"]))


def test_alternating_schedule_updates_both_networks(image_folder):
    job = small_job(image_folder, alternating=True)
    vm0 = [p.detach().clone() for p in job.viewmaker.parameters()]
    enc0 = [p.detach().clone() for p in job.encoder.parameters()]
    fit(job, progress=False)
    assert any(not torch.equal(a, b) for a, b in zip(vm0, job.viewmaker.parameters(), strict=True))
    assert any(not torch.equal(a, b) for a, b in zip(enc0, job.encoder.parameters(), strict=True))
    assert all(p.requires_grad for p in job.encoder.parameters())


def test_run_folder_and_load_viewmaker_reproduces_training_module(image_folder, tmp_path):
    summary = train(fast_config(image_folder, epochs=2), out=tmp_path / "runs", progress=False)
    run = tmp_path / "runs" / "train"
    assert summary["run"] == str(run)
    assert sorted(p.name for p in run.iterdir()) == sorted(
        [
            "config.json",
            "summary.json",
            "metrics.csv",
            "checkpoint.pt",
            "viewmaker.safetensors",
            "encoder.safetensors",
            "preview.png",
            "training.png",
        ]
    )
    assert len((run / "metrics.csv").read_text().strip().splitlines()) == 3  # header + 2 epochs

    state = runs.load_checkpoint(run / "checkpoint.pt")
    trained = Viewmaker(channels=1, budget=0.05, width=8, clamp=(0.0, 1.0))
    trained.load_state_dict(state["viewmaker"])
    augment = vmcli.load_viewmaker(run)
    x = torch.rand(3, 1, 16, 16)
    expected = trained(x, generator=torch.Generator().manual_seed(5))
    got = augment(x, generator=torch.Generator().manual_seed(5))
    assert torch.equal(got, expected)
    # works at other sizes too (fully convolutional), and keeps the budget
    big = torch.rand(1, 1, 40, 52)
    assert augment(big).shape == big.shape

    features = vmcli.load_encoder(run)
    raw = (torch.rand(4, 1, 16, 16) * 255).to(torch.uint8)
    assert features(raw).shape == (4, 128) and features.features(raw).shape == (4, 256)


def test_resume_continues_exactly(image_folder, tmp_path, single_thread):
    straight = train(fast_config(image_folder, epochs=2), out=tmp_path / "a", progress=False)
    train(fast_config(image_folder, epochs=1), out=tmp_path / "b", progress=False)
    resumed = train(
        fast_config(image_folder), resume=tmp_path / "b" / "train", epochs=2, progress=False
    )
    a = runs.load_checkpoint(tmp_path / "a" / "train" / "checkpoint.pt")
    b = runs.load_checkpoint(tmp_path / "b" / "train" / "checkpoint.pt")
    for k in a["encoder"]:
        assert torch.equal(a["encoder"][k], b["encoder"][k]), k
    assert resumed["final_loss"] == pytest.approx(straight["final_loss"], rel=1e-6)
    with pytest.raises(ConfigError, match="already finished"):
        train(fast_config(image_folder), resume=tmp_path / "b" / "train", progress=False)


def test_ctrl_c_finishes_the_step_checkpoints_and_resumes_exactly(
    image_folder, tmp_path, monkeypatch, single_thread
):
    import os
    import signal

    import vmcli.training as T

    calls = {"n": 0}
    real = T.nt_xent

    def interrupted(*a, **k):  # Ctrl-C arrives in the middle of the first step
        calls["n"] += 1
        if calls["n"] == 1:
            os.kill(os.getpid(), signal.SIGINT)
        return real(*a, **k)

    monkeypatch.setattr(T, "nt_xent", interrupted)
    cfg = fast_config(image_folder, epochs=2, batch_size=4)  # 4 steps per epoch
    with pytest.raises(TrainingInterrupted, match="resume with"):
        train(cfg, out=tmp_path / "r", progress=False)
    run = tmp_path / "r" / "train"
    state = runs.load_checkpoint(run / "checkpoint.pt")
    assert (state["epoch"], state["step"]) == (0, 1)  # the step in flight was completed
    assert not (run / "summary.json").exists()
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler  # handler restored

    train(fast_config(image_folder), resume=run, progress=False)
    train(fast_config(image_folder, epochs=2, batch_size=4), out=tmp_path / "s", progress=False)
    a = runs.load_checkpoint(run / "checkpoint.pt")
    b = runs.load_checkpoint(tmp_path / "s" / "train" / "checkpoint.pt")
    assert all(torch.equal(a["encoder"][k], b["encoder"][k]) for k in a["encoder"])
    assert all(torch.equal(a["viewmaker"][k], b["viewmaker"][k]) for k in a["viewmaker"])


def test_public_api_names_are_the_functions_not_modules():
    import vmcli.evaluation
    import vmcli.session
    import vmcli.training  # noqa: F401  (importing submodules must not shadow the API)

    assert callable(vmcli.train) and vmcli.train.__module__ == "vmcli.session"
    assert callable(vmcli.evaluate) and callable(vmcli.fit) and callable(vmcli.load_viewmaker)


# -- torch.compile: explicit, auto on long CPU runs, and a fallback when it fails -----------------


def test_auto_compile_waits_for_a_long_cpu_run(image_folder, monkeypatch):
    from vmcli import training

    compiled = []
    monkeypatch.setattr(torch, "compile", lambda fn, **kw: compiled.append(fn) or fn)
    fit(small_job(image_folder, epochs=2), progress=False)  # auto, seconds long: stays eager
    assert compiled == []
    fit(small_job(image_folder, epochs=2, compile=False), progress=False)
    assert compiled == []
    monkeypatch.setattr(training, "AUTO_COMPILE_MINUTES", -1)  # every run counts as long
    job = small_job(image_folder, epochs=2)
    fit(job, progress=False)
    assert compiled == [job.encoder, compiled[1]] and len(compiled) == 2  # once, both networks
    assert compiled[1].viewmaker is job.viewmaker


def test_auto_compile_on_one_cpu_or_gpu_for_long_runs_never_under_ddp():
    from types import SimpleNamespace

    from vmcli.distributed import World
    from vmcli.training import Compiler

    def eager(x):
        return x

    for device, world, steps_left, compiles in (
        (torch.device("cuda", 0), World(), 1_000_000, True),
        (torch.device("cuda", 0), World(), 10, False),  # minutes left: not worth a compile
        (torch.device("cpu"), World(rank=0, size=2), 1_000_000, False),
        (torch.device("cuda", 1), World(rank=1, size=2), 1_000_000, False),
        (torch.device("mps"), World(), 1_000_000, False),
    ):
        job = SimpleNamespace(
            cfg=SimpleNamespace(compile=None),
            device=device,
            world=world,
            encoder_fn=eager,
            raw_fn=None,
            transforms_fn=None,
            transforms=None,
        )
        Compiler(job).consider(steps_done=10, steps_left=steps_left, seconds=100.0)
        assert (job.encoder_fn is not eager) == compiles, (device, world)


@pytest.mark.parametrize(
    ("message", "shown"),
    [
        (
            "InductorError: no working C++ compiler found",
            "(RuntimeError: InductorError: no working",
        ),
        ("", "(RuntimeError: )"),  # an exception without a message falls back as well
    ],
)
def test_a_failing_compile_falls_back_to_eager_with_a_warning(
    image_folder, monkeypatch, capsys, message, shown
):
    def broken(fn, **options):
        def call(*args, **kwargs):
            raise RuntimeError(message)

        return call

    monkeypatch.setattr(torch, "compile", broken)
    job = small_job(image_folder, epochs=2, compile=True)
    result = fit(job, progress=False)
    assert torch.isfinite(torch.tensor(result["loss"])) and len(result["metrics"]) == 2
    assert job.encoder_fn is job.encoder  # back to the eager module
    err = " ".join(capsys.readouterr().err.split())
    assert f"torch.compile failed {shown}" in err


@pytest.mark.parametrize("views", ["learned-transforms", "handcrafted"])
def test_the_two_views_of_a_sample_are_drawn_independently(image_folder, views):
    """Both views come from one call on the doubled batch: view 1 and view 2 of a sample must
    still differ, and the stack must be [view 1 of every sample; view 2 of every sample]."""
    job = small_job(image_folder, views=views)
    raw = job.data[:1].expand(4, *job.data.shape[1:]).contiguous()  # one image, four times
    made = make_views(job, raw, torch.Generator().manual_seed(0), reverse=False)
    assert made.views.shape[0] == 8
    sums = {round(float(s), 4) for s in made.views.detach().float().sum(dim=(1, 2, 3))}
    assert len(sums) == 8  # eight distinct views of the same image


def test_compiling_a_transforms_run_compiles_their_pure_part(image_folder, monkeypatch):
    """--compile wraps the transforms' pure part (`transform`, no random draws), and the step
    calls it for the views (the probe and the preview stay eager)."""
    from vmcli.training import Compiler, prepare

    compiled, calls = [], []

    def fake_compile(fn, **options):
        compiled.append(fn)
        return lambda *a: calls.append(fn) or fn(*a)

    monkeypatch.setattr(torch, "compile", fake_compile)
    job = small_job(image_folder, views="learned-transforms", compile=True)
    prepare(job)
    Compiler(job)
    assert job.transforms.transform in compiled
    make_views(job, job.data[:4], torch.Generator().manual_seed(5), reverse=True)
    assert calls == [job.transforms.transform]


@pytest.mark.parametrize(
    ("cls", "shape"),
    [
        (SensorTransforms, (8, 2, 64)),
        (AudioTransforms, (8, 1, 64)),
        (ImageTransforms, (8, 3, 8, 8)),
    ],
    ids=["sensor", "audio", "image"],
)
def test_compiled_transforms_make_the_eager_views_and_gradients(cls, shape):
    """The random draws are taken out of `transform` so torch.compile captures it as one
    graph (fullgraph: a break fails), forward and backward; traced through AOT autograd it
    must give the eager views and strength gradients. (The aot_eager backend skips Inductor's
    code generation, most of a minute per family on this CPU; `benchmarks/throughput.py
    --compile` runs the Inductor build.)"""
    t = cls()
    x = torch.rand(shape, generator=torch.Generator().manual_seed(0))
    fn = torch.compile(t.transform, dynamic=False, fullgraph=True, backend="aot_eager")

    def views_and_grad(transform):
        t.zero_grad(set_to_none=True)
        v = t(x, torch.Generator().manual_seed(5), transform)
        (v * torch.linspace(0, 1, v.numel()).view_as(v)).sum().backward()
        return v.detach(), t.logits.grad.clone()

    eager, compiled = views_and_grad(None), views_and_grad(fn)
    torch.testing.assert_close(compiled[0], eager[0], atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(compiled[1], eager[1], atol=1e-4, rtol=1e-3)


def _cpu_bf16(monkeypatch, native: bool) -> None:
    """Make this CPU look like one with (or without) bf16 hardware, wherever vm asks."""
    import vmcli.devices
    import vmcli.session

    monkeypatch.setattr(vmcli.devices, "cpu_computes_bf16", lambda: native)
    monkeypatch.setattr(vmcli.session, "cpu_computes_bf16", lambda: native)


@pytest.mark.parametrize("native", [False, True])
def test_auto_precision_on_the_cpu_follows_its_bf16_hardware(image_folder, monkeypatch, native):
    """What config.json records: bf16 autocast on a CPU that computes it, fp32 on one that
    would emulate it; an explicit choice is kept either way."""
    _cpu_bf16(monkeypatch, native)
    modality, cpu = MODALITIES["image"], torch.device("cpu")
    auto = _resolve(fast_config(image_folder, precision="auto"), modality, 16, cpu)
    assert auto.precision == ("bf16" if native else "fp32")
    for explicit in ("fp32", "bf16"):
        cfg = fast_config(image_folder, precision=explicit)
        assert _resolve(cfg, modality, 16, cpu).precision == explicit


def test_sensors_stay_fp32_on_auto_even_on_a_bf16_cpu(tmp_path, monkeypatch):
    """Their benchmark scored lower on validation in bf16: auto keeps them in fp32."""
    from test_transforms import write_sensor_folder

    _cpu_bf16(monkeypatch, True)
    sensors = write_sensor_folder(tmp_path / "watch")
    cfg = fast_config(sensors, precision="auto")
    assert _resolve(cfg, MODALITIES["sensor"], 24, torch.device("cpu")).precision == "fp32"


def test_bf16_asked_for_on_a_cpu_that_emulates_it_is_warned_about(
    image_folder, monkeypatch, capsys
):
    _cpu_bf16(monkeypatch, False)
    modality, cpu = MODALITIES["image"], torch.device("cpu")
    capsys.readouterr()
    _resolve(fast_config(image_folder, precision="bf16"), modality, 16, cpu)
    err = capsys.readouterr().err
    assert "no bf16 hardware" in err and "--precision fp32" in err
    _resolve(fast_config(image_folder, precision="fp32"), modality, 16, cpu)
    assert "bf16" not in capsys.readouterr().err


def test_a_bf16_run_resumed_on_a_cpu_without_bf16_hardware_goes_on_in_fp32(
    image_folder, tmp_path, monkeypatch, capsys
):
    """A run trained on a GPU or a bf16 CPU would crawl on emulated bf16: resumed in fp32,
    said once; the run's own config.json keeps what it was trained with."""
    train(fast_config(image_folder, precision="bf16"), out=tmp_path, progress=False)
    run = tmp_path / "train"
    _cpu_bf16(monkeypatch, False)
    capsys.readouterr()
    resumed = train(fast_config(image_folder), resume=run, epochs=2, progress=False)
    out = capsys.readouterr()
    assert "resuming in fp32" in out.out + out.err
    assert resumed["precision"] == "fp32"
    assert runs.read_config(run)["train"]["precision"] == "bf16"


@pytest.mark.parametrize("data", ["watch", "fashion-mnist"])
def test_a_diverging_run_with_learned_transforms_stops_cleanly(data, tmp_path):
    """Diverged strengths reached index arithmetic (sensors: a traceback, exit 1) and
    grid_sample's backward (images: a segfault, leaving a run folder with config.json
    alone). Now, as for the viewmaker: "training diverged", exit 3, no run folder. In a
    subprocess: a regression would crash the process."""
    import subprocess
    import sys
    from pathlib import Path

    examples = Path(__file__).resolve().parent.parent / "examples"
    args = [sys.executable, "-m", "vmcli", "train", str(examples / data), "--epochs", "2"]
    args += ["--encoder-lr", "1e30", "--device", "cpu", "-q", "--out", str(tmp_path / "r")]
    done = subprocess.run(args, capture_output=True, text=True, timeout=300)
    assert done.returncode == 3, done.stderr[-2000:]
    assert "training diverged at step" in done.stderr and "Traceback" not in done.stderr
    assert not (tmp_path / "r" / "train").exists()


def test_non_finite_crops_and_positions_give_nan_views_not_crashes():
    """The sampling helpers turn a NaN crop or position into a NaN view (the divergence check
    reports it) instead of an out-of-range index or a segfault in grid_sample's backward."""
    from vmcli.views import resample_positions, sample_crop

    x = torch.rand(2, 3, 8, 8, requires_grad=True)
    theta = torch.tensor([[[0.5, 0, 0], [0, 0.5, 0]], [[float("nan"), 0, 0], [0, 0.5, 0]]])
    theta.requires_grad_(True)
    out = sample_crop(x, theta)
    assert torch.isfinite(out[0]).all() and torch.isnan(out[1]).all()
    out[0].sum().backward()  # no crash; the finite sample's gradient is finite
    assert torch.isfinite(x.grad).all()
    sig = torch.rand(2, 3, 16)
    pos = torch.stack([torch.linspace(0, 15, 16), torch.full((16,), float("nan"))])
    got = resample_positions(sig, pos)
    assert torch.allclose(got[0], sig[0]) and torch.isnan(got[1]).all()
