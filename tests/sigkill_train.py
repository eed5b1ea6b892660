"""`vm train ARGS`, killed with SIGKILL in the middle of training step N (no cleanup runs).

    python tests/sigkill_train.py N train DATA ...

The kill lands inside step N's loss, after its views were made and before any weight moved:
what a `kill -9` or a preempted VM does to a run at an arbitrary moment.
"""

from __future__ import annotations

import os
import signal
import sys

import vmcli.training as training
from vmcli.cli import main

kill_at = int(sys.argv[1])
real_loss = training.nt_xent
calls = 0


def loss_then_kill(*args, **kwargs):
    global calls
    calls += 1
    if calls == kill_at:
        os.kill(os.getpid(), signal.SIGKILL)
    return real_loss(*args, **kwargs)


training.nt_xent = loss_then_kill
sys.argv = ["vm", *sys.argv[2:]]
main()
