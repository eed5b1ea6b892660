"""The one Rich console, on stderr, so stdout stays free for `--json`."""

from __future__ import annotations

import json
import os
import sys
from typing import Any

from rich.console import Console
from rich.markup import escape

# under `vm train --devices N` rank 0 speaks for every rank: the others print nothing (an
# error of theirs reaches the launcher through `note_rank_error`)
OTHER_RANK = os.environ.get("RANK", "0") != "0"
console = Console(stderr=True, highlight=False, quiet=OTHER_RANK)


def info(message: str) -> None:
    console.print(escape(message), soft_wrap=True)


def warn(message: str) -> None:
    console.print(f"[yellow]warning:[/yellow] {escape(message)}", soft_wrap=True)


def error(message: str) -> None:
    console.print(f"[red]error:[/red] {escape(message)}", soft_wrap=True)


def _leave_for_launcher(kind: str, text: str = "") -> None:
    """A file `{kind}{RANK}` in the folder the launcher gave its ranks (VM_RANK_ERRORS)."""
    folder = os.environ.get("VM_RANK_ERRORS")
    if folder:
        with open(os.path.join(folder, f"{kind}{os.environ.get('RANK', '0')}"), "w") as f:
            f.write(text)


def note_rank_error(message: str) -> None:
    """A rank other than 0 leaves its error line for the launcher, which prints it when rank 0
    did not fail (an error only that rank met): printed by every rank, it came N times."""
    if OTHER_RANK:
        _leave_for_launcher("rank", message)


def note_peer_failure() -> None:
    """This rank stopped only because another did (its collective lost a peer): the launcher
    reports the other's error, not this one."""
    _leave_for_launcher("peer")


def end_failed_rank(code: int) -> None:
    """A rank of a distributed run that failed exits now, with `code`: without leaving the
    process group (another rank may be blocked in a collective: see `distributed.teardown`)
    and without interpreter shutdown, where the group's threads would be killed (SIGABRT)
    and the exit code lost. Its error was printed (rank 0) or left for the launcher."""
    if int(os.environ.get("WORLD_SIZE", "1")) > 1:
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)


def first_few(names: list[str], total: int, sep: str = ", ") -> str:
    """ "a, b, c, and 4 more": the first names a message shows of `total` (the rest counted)."""
    more = f"{sep}and {total - len(names)} more" if total > len(names) else ""
    return sep.join(names) + more


def budget_text(delta_l1: float, budget: float, view_l1: float | None = None) -> str:
    """`|δ| 0.1000 (ε 0.1)`, and the change the views really got where clamping views to
    [0, 1] took part of δ away (δ itself always has mean |δ| = ε, so alone it says nothing)."""
    text = f"|δ| {delta_l1:.4f} (ε {budget:g})"
    if view_l1 is not None and view_l1 < 0.995 * delta_l1:
        text += f", {view_l1:.4f} after clamping"
    return text


def print_json(payload: dict[str, Any]) -> None:
    """Write one JSON document to stdout (the machine-readable channel). A reader that closed
    it early (`| head`, `| true`) is no failure of the command: it goes on and exits as it
    would (it ended with exit 1 and no message, after its work was done)."""
    try:
        sys.stdout.write(json.dumps(payload, indent=2, default=str) + "\n")
        sys.stdout.flush()
    except BrokenPipeError:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())  # the interpreter's final flush must not fail
        os.close(devnull)


class TrainProgress:
    """Progress for `fit()`: a Rich bar on a terminal, one plain line per update elsewhere.

    Updates arrive every `log_every` steps (each one a host sync), never per step.
    """

    def __init__(
        self, total_steps: int, done_steps: int = 0, enabled: bool = True, label: str = "train"
    ):
        self.total, self.done, self.enabled, self.label = total_steps, done_steps, enabled, label
        self._bar = None
        # a live bar only where it can redraw: a dumb terminal (TERM=dumb) showed nothing
        # until the run stopped
        if enabled and console.is_terminal and not console.is_dumb_terminal:
            from rich.progress import (
                BarColumn,
                MofNCompleteColumn,
                Progress,
                TextColumn,
                TimeRemainingColumn,
            )

            self._bar = Progress(
                TextColumn(f"[bold]{label}[/bold]"),
                BarColumn(),
                MofNCompleteColumn(),
                TextColumn("{task.fields[status]}"),
                TimeRemainingColumn(),
                console=console,
                transient=False,
            )
            self._task = self._bar.add_task(
                label, total=total_steps, completed=done_steps, status=""
            )
            self._bar.start()

    def update(self, done_steps: int, status: str) -> None:
        self.done = done_steps
        if self._bar is not None:
            self._bar.update(self._task, completed=done_steps, status=status)
        elif self.enabled:  # one line per update, never wrapped (log files are grepped)
            unit = "step" if self.label == "train" else "file"
            console.print(f"{unit} {done_steps}/{self.total}  {status}", soft_wrap=True)

    def close(self) -> None:
        if self._bar is not None:
            self._bar.stop()
            self._bar = None
