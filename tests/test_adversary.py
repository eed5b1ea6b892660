"""The adversary's effect and the control arm: is a run's view generator actually learned?"""

from __future__ import annotations

import csv
import json

import pytest
import torch
from conftest import fast_config
from PIL import Image
from test_train import small_job

from vmcli import runs
from vmcli.config import TrainConfig
from vmcli.errors import ConfigError
from vmcli.session import train
from vmcli.training import adversary_inert, adversary_probe, fit


def test_random_views_keep_the_viewmaker_at_its_initialisation(image_folder):
    job = small_job(image_folder, views="random", epochs=2)
    vm0 = {k: v.clone() for k, v in job.viewmaker.state_dict().items()}
    enc0 = [p.detach().clone() for p in job.encoder.parameters()]
    result = fit(job, progress=False)
    assert all(torch.equal(vm0[k], v) for k, v in job.viewmaker.state_dict().items())
    assert not any(p.requires_grad for p in job.viewmaker.parameters())
    assert any(not torch.equal(a, b) for a, b in zip(enc0, job.encoder.parameters(), strict=True))
    assert result["delta_l1"] == pytest.approx(job.cfg.budget, rel=1e-4)
    assert "probe_loss" not in result  # nothing is learned: no adversary to measure


def test_probe_compares_with_the_initial_copy_on_the_same_noise(image_folder):
    job = small_job(image_folder)
    raw = job.data[:8]
    autocast = torch.autocast("cpu", enabled=False)
    norms_before = {k: v.clone() for k, v in job.encoder.state_dict().items()}
    loss, loss0, cos, cos0 = adversary_probe(job, raw, 3, autocast).tolist()
    assert loss == pytest.approx(loss0) and cos == pytest.approx(cos0)  # untrained: identical
    # batch-norm running statistics are untouched by the probe
    assert all(torch.equal(norms_before[k], v) for k, v in job.encoder.state_dict().items())
    job.viewmaker.budget = 0.5  # stands in for a viewmaker that learned harder views
    loss, loss0, cos, cos0 = adversary_probe(job, raw, 3, autocast).tolist()
    assert loss > loss0 and cos < cos0
    assert adversary_probe(job, raw, 3, autocast).tolist()[0] == pytest.approx(loss)


def test_inert_threshold():
    assert adversary_inert(0.0, 1.0)
    assert adversary_inert(0.04, 1.0)  # under 5 % of the loss
    assert not adversary_inert(0.2, 1.0)
    assert adversary_inert(0.015, 0.01) and not adversary_inert(0.03, 0.01)


def test_inert_run_is_warned_about_and_reported(image_folder, tmp_path, capsys):
    # viewmaker lr 0: the "learned" viewmaker never moves, so it is exactly as hard as at init
    summary = train(
        fast_config(image_folder, epochs=2, viewmaker_lr=0.0), out=tmp_path, progress=False
    )
    run = tmp_path / "train"
    adv = summary["adversary"]
    assert adv["effect"] == 0.0 and adv["inert"]
    err = capsys.readouterr().err
    assert "the adversary is inert" in err and "(--views random)" in err
    rows = list(csv.DictReader((run / runs.METRICS).open()))
    assert {"probe_loss", "probe_loss_init", "adversary_effect", "pos_cos", "pos_cos_init"} <= set(
        rows[0]
    )
    assert len(rows) == 2 and float(rows[-1]["adversary_effect"]) == 0.0
    assert json.loads((run / runs.SUMMARY).read_text())["adversary"]["inert"]
    with Image.open(run / runs.TRAINING_PLOT) as img:
        # three panels: loss; learned vs initial views; their gap beside the inert line
        assert img.size[1] == 3 * 300


def test_active_run_is_not_warned_about(image_folder, tmp_path, capsys, monkeypatch):
    import vmcli.session as session

    build = session._build_job

    def harder_learned_views(*args, **kwargs):
        job = build(*args, **kwargs)
        job.viewmaker.budget = 0.5  # learned views 10× the control's budget: far harder
        return job

    monkeypatch.setattr(session, "_build_job", harder_learned_views)
    summary = train(fast_config(image_folder, epochs=1), out=tmp_path, progress=False)
    assert summary["adversary"]["effect"] > 0.1 and not summary["adversary"]["inert"]
    assert "inert" not in capsys.readouterr().err


def test_learning_rates_are_options_and_validated(image_folder):
    with pytest.raises(ConfigError, match="viewmaker-lr"):
        TrainConfig(data=str(image_folder), viewmaker_lr=-1).validate()
    for views in ("viewmaker", "random", "learned-transforms", "fixed-transforms"):
        TrainConfig(data=str(image_folder), views=views).validate()


def test_views_auto_resolves_per_modality_and_leaves_the_callers_config(tmp_path):
    from test_transforms import write_sensor_folder

    from vmcli.session import train

    sensors = write_sensor_folder(tmp_path / "watch")
    cfg = fast_config(sensors, budget=None)
    assert cfg.views == "auto"
    summary = train(cfg, out=tmp_path / "runs", progress=False)
    assert summary["views"] == "learned-transforms"
    assert cfg.views == "auto"  # the library resolves a copy; the caller's config is reusable
    with_budget = train(fast_config(sensors, budget=0.3), out=tmp_path / "runs", progress=False)
    assert with_budget["views"] == "viewmaker" and with_budget["budget"] == 0.3


def test_default_budget_is_per_view_space(image_folder, tmp_path):
    from test_transforms import write_sensor_folder

    from vmcli.data import MODALITIES
    from vmcli.session import _resolve

    sensors = write_sensor_folder(tmp_path / "watch")
    cpu = torch.device("cpu")
    image = MODALITIES["image"]
    sensor = MODALITIES["sensor"]
    assert _resolve(fast_config(image_folder, budget=None), image, 16, cpu).budget == 0.1
    assert _resolve(fast_config(sensors, budget=None), sensor, 24, cpu).budget == 0.2
    spectro = fast_config(sensors, view_space="spectrogram", budget=None)
    assert _resolve(spectro, sensor, 24, cpu).budget == 0.05
    audio = MODALITIES["audio"]
    assert audio.default_budget("spectrogram") == 0.2
    assert audio.default_budget("waveform") == 0.05
    assert _resolve(fast_config(sensors, budget=0.1), sensor, 24, cpu).budget == 0.1


def test_a_budget_of_half_the_pixel_range_is_warned_about(image_folder, tmp_path, capsys):
    """ε ≥ 0.5 on [0, 1] pixels leaves views of mostly clamped noise: legal, but said."""
    from test_transforms import write_sensor_folder

    from vmcli.data import MODALITIES
    from vmcli.session import _resolve

    cpu = torch.device("cpu")
    image = MODALITIES["image"]
    capsys.readouterr()
    _resolve(fast_config(image_folder, budget=0.2), image, 16, cpu)
    assert "clamped" not in capsys.readouterr().err
    assert _resolve(fast_config(image_folder, budget=0.5), image, 16, cpu).budget == 0.5
    err = capsys.readouterr().err
    assert "--budget 0.5" in err and "pixels range [0, 1]" in err and "clamped" in err
    # signals are not clamped: a large ε there is a choice, not a units mistake
    sensors = write_sensor_folder(tmp_path / "watch")
    _resolve(fast_config(sensors, budget=3.0), MODALITIES["sensor"], 24, cpu)
    assert "clamped" not in capsys.readouterr().err


def test_inert_advice_names_the_families_own_knob_and_control(image_folder):
    from vmcli.session import _inert_advice

    adversary = {"loss_learned_views": 4.674, "loss_initial_views": 4.466}
    tf = _inert_advice(fast_config(image_folder, views="learned-transforms"), adversary)
    assert "--transforms-lr" in tf and "(--views fixed-transforms)" in tf and "4.674 vs 4.466" in tf
    vm = _inert_advice(fast_config(image_folder, views="viewmaker", budget=0.1), adversary)
    assert "--budget (now 0.1)" in vm and "(--views random)" in vm and "--transforms-lr" not in vm
    both = _inert_advice(fast_config(image_folder, views="both", budget=0.1), adversary)
    assert "--viewmaker-lr" in both and "(--views handcrafted)" in both
    combined = fast_config(image_folder, views="learned-transforms+viewmaker", budget=0.1)
    text = _inert_advice(combined, adversary)
    assert "--transforms-lr" in text and "--viewmaker-lr" in text
    assert "(--views fixed-transforms, --views random)" in text


def test_samples_per_second_count_training_steps_not_the_probe(image_folder, monkeypatch):
    """The probe runs at every log point (at least once an epoch): a slow one used to be
    counted as training time, which lowered samples/s by up to a fifth on short epochs."""
    import time

    import vmcli.training as T

    real = T.adversary_probe

    def slow_probe(*a, **k):
        time.sleep(4.0)  # 2 steps of 8 samples take far less than a second here
        return real(*a, **k)

    monkeypatch.setattr(T, "adversary_probe", slow_probe)
    job = small_job(image_folder, views="viewmaker", epochs=1, batch_size=8, log_every=50)
    result = fit(job, progress=False)
    assert result["samples"] == 16 and "probe_loss" in result
    assert result["samples_per_s"] > 8  # counting the probe: at most 16 / 4 s = 4


def test_the_budget_line_says_what_clamping_took_away():
    from vmcli.console import budget_text

    assert budget_text(0.1, 0.1, 0.0841) == "|δ| 0.1000 (ε 0.1), 0.0841 after clamping"
    assert budget_text(0.2, 0.2, 0.19999) == "|δ| 0.2000 (ε 0.2)"  # nothing clamped
    assert budget_text(0.05, 0.05) == "|δ| 0.0500 (ε 0.05)"
