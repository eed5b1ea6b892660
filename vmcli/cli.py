"""`vm`: thin Typer commands (parse → call the library → render). Heavy imports stay inside
the commands so `vm --help` is instant; all human output goes to stderr, `--json` to stdout."""

from __future__ import annotations

import functools
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any, TypeVar

import typer
from rich.markup import escape

from vmcli import __version__
from vmcli.config import (
    VIEWMAKER_VIEWS,
    DataMode,
    LoadOptions,
    Precision,
    TrainConfig,
    Views,
    parse_transforms_budget,
)
from vmcli.console import (
    budget_text,
    console,
    end_failed_rank,
    error,
    note_peer_failure,
    note_rank_error,
    print_json,
)
from vmcli.errors import STORAGE_ERRNOS, VmError, as_out_of_memory, as_storage_error

app = typer.Typer(
    name="vm",
    help="Learn data augmentations (viewmaker networks, learned transform strengths) for self-supervised learning on your own "
    "images, audio clips, sensor CSV windows or NumPy arrays.",
    no_args_is_help=True,
    add_completion=False,
    rich_markup_mode="rich",
    context_settings={"help_option_names": ["-h", "--help"]},
)

F = TypeVar("F", bound=Callable[..., Any])

RunsOpt = Annotated[
    Path, typer.Option("--runs", help="Folder that holds run folders (for the newest-run default).")
]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print one JSON summary on stdout.")]
DeviceOpt = Annotated[str, typer.Option(help="auto (GPU if there is one), cpu, cuda or cuda:N.")]


def _without_devices(argv: list[str]) -> list[str]:
    """argv minus `--devices N` / `--devices=N` (the relaunched processes are the devices)."""
    out, skip = [], False
    for arg in argv:
        if skip:
            skip = False
        elif arg == "--devices":
            skip = True
        elif not arg.startswith("--devices="):
            out.append(arg)
    return out


def handle_errors(fn: F) -> F:
    """Turn library errors into a one-line message and the error's exit code (no tracebacks)."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except VmError as e:
            _fail(str(e), e.exit_code, kwargs.get("as_json", False))
        except KeyboardInterrupt:
            _fail("interrupted", 130, kwargs.get("as_json", False))
        except (MemoryError, RuntimeError, OSError) as e:  # OutOfMemoryError: a RuntimeError
            from vmcli.distributed import is_peer_failure, world_from_env

            if world_from_env().distributed and is_peer_failure(e):
                note_peer_failure()  # another rank failed first: the launcher says why
                end_failed_rank(1)
            known = as_out_of_memory(e, fn.__name__.rstrip("_"))  # eval_ → eval
            if known is None and isinstance(e, OSError) and e.errno in STORAGE_ERRNOS:
                known = as_storage_error(e, Path(e.filename or "a file"))
            if known is None:
                raise
            _fail(str(known), known.exit_code, kwargs.get("as_json", False))

    return wrapper  # type: ignore[return-value]


def _fail(message: str, code: int, as_json: bool = False) -> None:
    """One error line (rank 0's, or left for the launcher by another rank), then exit; with
    `--json`, the same error as the one JSON document on stdout, for scripts."""
    error(message)
    note_rank_error(message)
    from vmcli.distributed import world_from_env

    if as_json and world_from_env().is_main:
        print_json({"error": message, "exit_code": code})
    end_failed_rank(code)
    raise typer.Exit(code) from None


def _version(value: bool) -> None:
    if value:
        typer.echo(f"vm {__version__}")
        raise typer.Exit()


@app.callback()
def main_options(
    version: Annotated[
        bool,
        typer.Option(
            "--version", callback=_version, is_eager=True, metavar="", help="Show the version."
        ),
    ] = False,
) -> None:
    pass


@app.command(
    epilog="Examples:\n\n"
    "  vm train ./photos --budget 0.1 --epochs 50\n\n"
    "  vm train ./clips --view-space waveform --device cuda\n\n"
    "  vm train ./imu --window 128 --stride 64\n\n"
    "  vm train --resume runs/train --epochs 200"
)
@handle_errors
def train(
    ctx: typer.Context,
    data: Annotated[
        Path | None,
        typer.Argument(
            help="Folder of images, audio clips, CSV sensor windows or .npy/.npz arrays.",
            show_default=False,
        ),
    ] = None,
    budget: Annotated[
        float | None,
        typer.Option(
            rich_help_panel="Views",
            help="Distortion budget ε: mean |δ| per example, in view-space units. \\[default: 0.1 for image pixels, 0.2 for sensor signals (channel stds) and audio spectrograms, 0.05 elsewhere]",
            show_default=False,
        ),
    ] = None,
    epochs: Annotated[
        int | None,
        typer.Option(
            rich_help_panel="Training",
            help=f"Training epochs. \\[default: {TrainConfig.epochs}]",
            show_default=False,
        ),
    ] = None,
    batch_size: Annotated[
        int | None,
        typer.Option(
            rich_help_panel="Training",
            help="Batch size (pairs of views). \\[default: 256 images, 128 audio/sensors]",
            show_default=False,
        ),
    ] = None,
    views: Annotated[
        Views,
        typer.Option(
            metavar="<views>",
            rich_help_panel="Views",
            help="auto (default: learned-transforms on sensor, audio and image data, where they win on validation; the viewmaker on arrays, or when --budget is given) | viewmaker | random (its control: the same viewmaker frozen at init) | learned-transforms (sensor, audio, image: learned strengths of standard transforms) | fixed-transforms (their control: the initial strengths) | learned-transforms+viewmaker | handcrafted | both (handcrafted, then viewmaker) | none.",
        ),
    ] = TrainConfig.views,
    view_space: Annotated[
        str | None,
        typer.Option(
            rich_help_panel="Views",
            help="Where the viewmaker acts: pixels (images); spectrogram | waveform (audio); signal | spectrogram (sensors); values (arrays). \\[default: per modality]",
            show_default=False,
        ),
    ] = None,
    modality: Annotated[
        str | None,
        typer.Option(
            rich_help_panel="Data",
            help="image | audio | sensor | array (needed only for folders that mix them).",
            show_default=False,
        ),
    ] = None,
    encoder: Annotated[
        str,
        typer.Option(
            rich_help_panel="Training",
            help="resnet18 | small | auto (resnet18 on a GPU, small on the CPU).",
        ),
    ] = TrainConfig.encoder,
    device: DeviceOpt = "auto",
    out: Annotated[
        Path,
        typer.Option(
            rich_help_panel="Run folder",
            help="Parent folder: each run gets a new numbered folder in it.",
        ),
    ] = Path("runs"),
    seed: Annotated[
        int,
        typer.Option(
            rich_help_panel="Training", help="Seed for initialisation, batch order and views."
        ),
    ] = TrainConfig.seed,
    resume: Annotated[
        Path | None,
        typer.Option(
            rich_help_panel="Run folder",
            help="Continue this run folder from its checkpoint.",
            show_default=False,
        ),
    ] = None,
    checkpoint_every: Annotated[
        str,
        typer.Option(
            rich_help_panel="Run folder",
            help="Checkpoints inside an epoch, at a step boundary: every 10m (minutes), 30s, 2h of training, or every 500steps; off = at epoch ends only.",
        ),
    ] = TrainConfig.checkpoint_every,
    allow_data_change: Annotated[
        bool,
        typer.Option(
            rich_help_panel="Run folder",
            help="With --resume: go on even if the data folder's training files changed since the run started.",
        ),
    ] = False,
    alternating: Annotated[
        bool,
        typer.Option(
            rich_help_panel="Views",
            help="The paper's two-pass schedule instead of one pass with gradient reversal.",
        ),
    ] = TrainConfig.alternating,
    precision: Annotated[
        Precision,
        typer.Option(
            rich_help_panel="Training",
            help="auto (bf16 autocast on CUDA, and for images on CPUs with bf16 hardware: AVX512-BF16 or AMX; fp32 elsewhere) | fp32 | bf16.",
        ),
    ] = TrainConfig.precision,
    compile: Annotated[
        bool | None,
        typer.Option(
            rich_help_panel="Training",
            help="torch.compile the networks and learned transforms (1–2 min to compile; then, on a CPU, default steps 1.3–1.45× faster on images, 1.05–1.1× on sensors, the viewmaker's 1.5×; on an H200 1.27× at batch 256). \\[default: auto: on the CPU or one GPU once a run is measured to have over 15 min left; not under DDP]",
            show_default=False,
        ),
    ] = TrainConfig.compile,
    image_size: Annotated[
        int | None,
        typer.Option(
            rich_help_panel="Images",
            help="Images: side of the square training crop. \\[default: median shorter side, 16..224]",
            show_default=False,
        ),
    ] = None,
    sample_rate: Annotated[
        int | None,
        typer.Option(
            rich_help_panel="Audio",
            help="Audio: resample to this rate in Hz. \\[default: 16000]",
            show_default=False,
        ),
    ] = None,
    clip_seconds: Annotated[
        float | None,
        typer.Option(
            rich_help_panel="Audio",
            help="Audio: clip length in seconds. \\[default: median length]",
            show_default=False,
        ),
    ] = None,
    window: Annotated[
        int | None,
        typer.Option(
            rich_help_panel="Sensors",
            help="Sensors: window length in rows (cuts long recordings with --stride). \\[default: median length]",
            show_default=False,
        ),
    ] = None,
    stride: Annotated[
        int | None,
        typer.Option(
            rich_help_panel="Sensors",
            help="Sensors: hop between windows cut from long recordings, in rows.",
            show_default=False,
        ),
    ] = None,
    columns: Annotated[
        str | None,
        typer.Option(
            rich_help_panel="Sensors",
            help="Sensors: comma-separated channel columns to use.",
            show_default=False,
        ),
    ] = None,
    array_layout: Annotated[
        str | None,
        typer.Option(
            rich_help_panel="Arrays",
            help="Arrays: read 2-D arrays as ct (channels × time) or hw (1-channel H × W images). \\[default: ct]",
            show_default=False,
        ),
    ] = None,
    viewmaker_width: Annotated[
        int | None,
        typer.Option(
            rich_help_panel="Views",
            help="Viewmaker first-layer width. \\[default: 32 on a GPU as in the paper, 16 on the CPU]",
            show_default=False,
        ),
    ] = None,
    temperature: Annotated[
        float, typer.Option(rich_help_panel="Training", help="NT-Xent temperature τ.")
    ] = TrainConfig.temperature,
    encoder_lr: Annotated[
        float,
        typer.Option(
            rich_help_panel="Training", help="Encoder SGD learning rate (momentum 0.9, wd 1e-4)."
        ),
    ] = TrainConfig.encoder_lr,
    viewmaker_lr: Annotated[
        float,
        typer.Option(
            rich_help_panel="Training",
            help="Viewmaker Adam learning rate: how fast the adversary adapts.",
        ),
    ] = TrainConfig.viewmaker_lr,
    transforms_lr: Annotated[
        float,
        typer.Option(
            rich_help_panel="Training",
            help="Adam learning rate of the learned transform strengths (their logits).",
        ),
    ] = TrainConfig.transforms_lr,
    transforms_budget: Annotated[
        str,
        typer.Option(
            rich_help_panel="Views",
            help="Learned transforms: hold the mean strength (a fraction of each transform's range, 0-1] fixed, so the adversary moves strength between transforms instead of raising all of them to their bounds; 'recipe': the standard recipe's own mean strength; 'none': each strength free within its bounds. auto: 'recipe' on audio (it wins there on validation), 'none' on sensors and images.",
        ),
    ] = "auto",
    transforms_max: Annotated[
        str | None,
        typer.Option(
            rich_help_panel="Views",
            help="Learned transforms: upper limits on named strengths, e.g. 'time_mask=0.15,noise=0.5' (what your data cannot take and keep its label; names and units in the summary's table; at most twice each default, probabilities and brightness/contrast/saturation at most 1, crops at most 0.95). \\[default: each strength's own bounds]",
            show_default=False,
        ),
    ] = None,
    data_mode: Annotated[
        DataMode,
        typer.Option(
            rich_help_panel="Data",
            help="memory (decode once, keep in RAM / on the GPU) | stream (decode from disk each epoch, bounded memory) | auto (stream only when the decoded data would exceed a quarter of the free RAM).",
        ),
    ] = TrainConfig.data_mode,
    workers: Annotated[
        int,
        typer.Option(rich_help_panel="Data", help="DataLoader worker processes when streaming."),
    ] = TrainConfig.workers,
    devices: Annotated[
        int,
        typer.Option(
            rich_help_panel="Training",
            help="Processes for data-parallel training (GPUs, or CPU processes); re-launches under torchrun. --batch-size is the global batch.",
        ),
    ] = 1,
    as_json: JsonOpt = False,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress output.")] = False,
) -> None:
    """Learn views of a folder's data and train an encoder on them; writes a new run folder.

    The views are learned transform strengths (the default on images, audio and sensors) or a
    viewmaker network (--views viewmaker, or any --budget). The folder's kind (images, audio,
    sensor CSVs, arrays) is detected; class subfolders and train/ test/ folders are recognised,
    but labels are never used for training.
    """
    from vmcli.errors import ConfigError
    from vmcli.session import train as run_training

    if data is None and resume is None:
        raise ConfigError("give a DATA folder to train on, or --resume RUN")
    if resume is not None and (devices == 1 or "WORLD_SIZE" in os.environ):
        _warn_ignored_with_resume(ctx)  # by the ranks' rank 0, not also by their launcher
    if devices < 1:
        raise ConfigError(f"--devices must be at least 1 (processes to train with); got {devices}")
    load = LoadOptions(
        image_size=image_size,
        sample_rate=sample_rate,
        clip_seconds=clip_seconds,
        window=window,
        stride=stride,
        columns=[c.strip() for c in columns.split(",") if c.strip()] if columns else None,
        array_layout=array_layout,
    )
    cfg = TrainConfig(
        data=str(data) if data is not None else "",
        modality=modality,
        view_space=view_space,
        views=views,
        budget=budget,
        epochs=epochs if epochs is not None else TrainConfig.epochs,
        batch_size=batch_size,
        encoder=encoder,
        viewmaker_width=viewmaker_width,
        temperature=temperature,
        encoder_lr=encoder_lr,
        viewmaker_lr=viewmaker_lr,
        transforms_lr=transforms_lr,
        transforms_budget=parse_transforms_budget(transforms_budget),
        transforms_max=transforms_max,
        alternating=alternating,
        device=device,
        precision=precision,
        compile=compile,
        seed=seed,
        data_mode=data_mode,
        workers=workers,
        checkpoint_every=checkpoint_every,
        load=load,
    )
    if devices > 1 and "WORLD_SIZE" not in os.environ:
        from vmcli import runs
        from vmcli.distributed import launch

        if resume is None:  # every process would find the same mistake: find it once, here
            cfg.validate()
            runs.check_out_folder(out)
            batch, dev = cfg.batch_size, cfg.device
            alt = cfg.alternating and (cfg.views == "auto" or cfg.learns_views)
        else:
            trained = runs.read_config(runs.resolve_run(resume))["train"]
            batch, dev = trained.get("batch_size"), trained.get("device", "auto")
            dev = "auto" if str(dev).startswith("cuda") else dev
            alt = bool(trained.get("alternating"))  # recorded False where nothing is learned
        raise typer.Exit(launch(devices, _without_devices(sys.argv[1:]), batch, dev, alt))
    summary = run_training(
        cfg,
        out=out,
        resume=resume,
        epochs=epochs,
        progress=not quiet,
        allow_data_change=allow_data_change,
    )
    from vmcli.distributed import world_from_env

    if not world_from_env().is_main:  # under torchrun, rank 0 reports
        return
    if as_json:
        print_json(summary)
    delta = (
        ", mean " + budget_text(summary["delta_l1"], summary["budget"], summary.get("view_l1"))
        if summary.get("delta_l1") is not None
        else ""
    )
    console.print(
        f"[green]done[/green]: {escape(summary['run'])}  loss {summary['final_loss']:.4f}"
        f"{delta}, {summary['samples_per_s']:,.0f} samples/s",
        soft_wrap=True,
    )
    console.print(
        escape(
            f"look at {Path(summary['run']) / 'preview.png'}; next: vm eval {summary['run']} --linear"
        ),
        soft_wrap=True,
    )


# what a resumed run still takes from the command line; every other setting is the run's own
RESUME_OPTIONS = {"resume", "epochs", "allow_data_change", "devices", "as_json", "quiet"}


def _warn_ignored_with_resume(ctx: typer.Context) -> None:
    """A resumed run keeps the settings it was started with (its checkpoint was trained
    under them): say which options typed beside --resume are not used, not drop them silently."""

    def typed(name: str) -> bool:  # by the enum's name: typer may bundle its own click
        source = ctx.get_parameter_source(name)
        return source is not None and source.name == "COMMANDLINE"

    ignored = [
        "DATA" if p.name == "data" else "/".join(p.opts + p.secondary_opts)  # --x/--no-x
        for p in ctx.command.params
        if p.name and p.name not in RESUME_OPTIONS and typed(p.name)
    ]
    if ignored:
        from vmcli.console import warn

        warn(
            f"ignored with --resume: {', '.join(ignored)} (a resumed run keeps the settings it "
            "started with; only --epochs, --allow-data-change and --devices apply)"
        )


@app.command(
    epilog="Examples:\n\n"
    "  vm augment ./images --out ./views\n\n"
    "  vm augment ./clips --out ./clip-views --run runs/train-3 --views-per-input 4 --seed 1"
)
@handle_errors
def augment(
    input: Annotated[
        Path,
        typer.Argument(help="Folder to augment (only read, never modified).", show_default=False),
    ],
    out: Annotated[
        Path,
        typer.Option(help="New folder for the views (mirrors the input tree).", show_default=False),
    ],
    run: Annotated[
        Path | None,
        typer.Option(
            help="Run folder whose learned views (viewmaker or transforms) to apply. \\[default: newest under --runs]",
            show_default=False,
        ),
    ] = None,
    views_per_input: Annotated[
        int, typer.Option(help="Views per input file (K > 1 names them name_view0.ext ...).")
    ] = 1,
    seed: Annotated[int, typer.Option(help="Same seed → same views.")] = 0,
    to_wav: Annotated[
        bool,
        typer.Option(help="Audio, spectrogram space: also write an approximate WAV (Griffin-Lim)."),
    ] = False,
    device: DeviceOpt = "auto",
    runs_parent: RunsOpt = Path("runs"),
    as_json: JsonOpt = False,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress output.")] = False,
) -> None:
    """Apply a run's learned views (viewmaker or transforms) to every file of a folder, in its format."""
    from vmcli.augment import augment_folder

    summary = augment_folder(
        input, out, run, views_per_input, seed, device, to_wav, runs_parent, progress=not quiet
    )
    if as_json:
        print_json(summary)
    console.print(
        f"[green]done[/green]: {summary['views_written']} views of {summary['files']} files → "
        f"{escape(str(summary['out']))} (run {escape(str(summary['run']))})",
        soft_wrap=True,
    )


@app.command(
    name="eval",
    epilog="Examples:\n\n  vm eval --linear\n\n  vm eval runs/train-2 --linear --knn --data ./labelled",
)
@handle_errors
def eval_(
    run: Annotated[
        Path | None,
        typer.Argument(help="Run folder. \\[default: newest under --runs]", show_default=False),
    ] = None,
    linear: Annotated[
        bool, typer.Option("--linear/--no-linear", help="Linear probe (logistic regression).")
    ] = True,
    knn: Annotated[
        bool, typer.Option("--knn", help="Also a kNN classifier (k=20, cosine).")
    ] = False,
    data: Annotated[
        Path | None,
        typer.Option(
            help="Labelled data folder. \\[default: the run's training data]", show_default=False
        ),
    ] = None,
    device: DeviceOpt = "auto",
    seed: Annotated[
        int,
        typer.Option(help="Seed for the split (when the data has none) and the random baseline."),
    ] = 0,
    runs_parent: RunsOpt = Path("runs"),
    group_by: Annotated[
        str | None,
        typer.Option(
            help="Regular expression naming each file's recording, searched in its path under "
            "DATA (its first group if it has one), for windows saved one per file, e.g. "
            "'(s\\d+_r\\d+)_w' for train/walk/s03_r007_w001.csv: recordings are kept whole in the "
            "split and intervals count them.",
            show_default=False,
        ),
    ] = None,
    as_json: JsonOpt = False,
) -> None:
    """Measure the learned representation: probes on frozen features beside honest baselines, with 95 % intervals."""
    from rich.table import Table

    from vmcli.evaluation import evaluate

    result = evaluate(run, data, linear, knn, device, seed, runs_parent, group_by)
    if as_json:
        print_json(result)
    table = Table(
        title=f"{result['run']}: {result['classes']} classes, chance {result['chance']:.3f}"
    )
    table.add_column("features", overflow="fold")
    table.add_column("dim", justify="right", overflow="fold")
    if linear:
        table.add_column("linear probe (95 % interval)", justify="right", overflow="fold")
    if knn:
        table.add_column("kNN, k=20 (95 % interval)", justify="right", overflow="fold")
    probes = [p for p, asked in (("linear", linear), ("knn", knn)) if asked]
    for row in result["rows"]:
        cells = [row["features"], str(row["dim"])]
        for probe in probes:
            lo, hi = row[f"{probe}_ci95"]
            cells.append(f"{row[probe]:.4f}  [dim]{lo:.3f}–{hi:.3f}[/dim]")
        table.add_row(*cells)
    console.print(table)
    if result["comparisons"]:
        console.print("vm encoder minus each baseline, on the same test samples:")
    for c in result["comparisons"]:
        probe = "linear probe" if c["probe"] == "linear" else "kNN"
        console.print(
            f"  {c['baseline']}, {probe}: {_difference_text(c)}", soft_wrap=True, markup=False
        )
    over = f"over the {result['test_samples']} test samples"
    if result.get("test_recordings"):
        over = (
            f"over the {result['test_samples']} test windows of {result['test_recordings']} "
            "recordings, counted as the independent samples they are worth"
        )
    console.print(
        f"split: {result['split']}. Intervals: 95 %, {over} (differences paired on the same "
        "samples); they leave out the training seed's own spread.",
        soft_wrap=True,
    )


def _difference_text(c: dict[str, Any]) -> str:
    """One of eval's paired comparisons: "+0.065 (+0.007 to +0.122) ahead"."""
    lo, hi = c["ci95"]
    return f"{c['difference']:+.3f} ({lo:+.3f} to {hi:+.3f}) {c['verdict']}"


@app.command(epilog="Examples:\n\n  vm info\n\n  vm info runs/train-2 --json")
@handle_errors
def info(
    run: Annotated[
        Path | None,
        typer.Argument(help="Run folder. \\[default: newest under --runs]", show_default=False),
    ] = None,
    runs_parent: RunsOpt = Path("runs"),
    as_json: JsonOpt = False,
) -> None:
    """Show a run's settings, training results and evaluation (if any)."""
    from rich.table import Table

    from vmcli import runs

    run_dir = runs.resolve_run(run, runs_parent)
    config = runs.read_config(run_dir)
    summary, evaluation = runs.read_results(run_dir)
    current = None if evaluation is None else runs.eval_is_current(run_dir, evaluation)
    unfinished = runs.unfinished(config, summary)
    if as_json:
        print_json(
            {
                "run": str(run_dir),
                "config": config,
                "summary": summary,
                "unfinished": unfinished,
                "eval": evaluation,
                "eval_is_current": current,
            }
        )
        return
    t = Table(title=escape(str(run_dir)), show_header=False)
    t.add_column(style="bold", overflow="fold")
    t.add_column(overflow="fold")
    cfg = config["train"]
    for key in (
        "data",
        "modality",
        "view_space",
        "views",
        "budget",
        "epochs",
        "batch_size",
        "encoder",
        "device",
        "precision",
        "seed",
    ):
        if key == "budget" and cfg.get("views") not in VIEWMAKER_VIEWS:
            continue  # ε is the viewmaker's; transforms runs show their strengths below
        t.add_row(key, escape(str(cfg.get(key))))
    t.add_row("samples", str(config.get("data", {}).get("samples")))
    if unfinished:
        t.add_row("status", f"{unfinished} (resume with: vm train --resume {run_dir})")
    if summary is not None:
        for key in ("final_loss", "delta_l1", "view_l1", "samples_per_s", "train_s"):
            if summary.get(key) is not None:
                t.add_row(key, f"{summary[key]:.4g}")
        adv = summary.get("adversary")
        if adv:
            t.add_row(
                "learned vs initial views",
                f"loss {adv['loss_learned_views']:.4f} vs {adv['loss_initial_views']:.4f} "
                f"(effect {adv['effect']:+.4f}{', inert' if adv['inert'] else ''})",
            )
        if summary.get("transforms_budget") is not None:
            t.add_row("transforms budget", f"{summary['transforms_budget']:g} (mean strength)")
        for row in summary.get("transforms") or []:
            t.add_row(
                f"strength: {row['name']}",
                f"{row['initial']:.3g} → {row['learned']:.3g} {row['unit']}",
            )
    if evaluation is not None:
        grouped = evaluation.get("group_by")
        t.add_row(
            "eval: data",
            escape(
                f"{evaluation.get('data')}, {evaluation.get('split')}"
                + (f", recordings by --group-by {grouped!r}" if isinstance(grouped, str) else "")
            ),
        )
    if evaluation is not None and current is False:
        t.add_row(
            "eval",
            "[yellow]of an earlier encoder: the run trained on since; run vm eval again[/yellow]",
        )
    elif evaluation is not None:
        for row in evaluation["rows"]:
            t.add_row(
                f"eval: {row['features']}",
                "  ".join(f"{k} {row[k]:.4f}" for k in ("linear", "knn") if k in row),
            )
        for c in evaluation.get("comparisons", []):  # absent in runs evaluated before them
            t.add_row(f"eval: minus {c['baseline']}, {c['probe']}", _difference_text(c))
    console.print(t)


def main() -> None:
    try:
        app()
    except KeyboardInterrupt:  # pragma: no cover - Ctrl-C outside a command
        sys.exit(130)


if __name__ == "__main__":
    main()
