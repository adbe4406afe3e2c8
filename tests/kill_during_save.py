"""Runs a training script and SIGKILLs it in the middle of writing one checkpoint.

    python tests/kill_during_save.py N train/pretrain_delta.py --config ...

The kill lands inside `accelerator.save_state` of the folder `checkpoint_N`: after the model, optimizer, scheduler
and RNG files are written, before the registered run progress and the completion marker. The training fault test
uses it to prove that a resumed run skips such a half-written folder.
"""

import os
import runpy
import signal
import sys

import accelerate.accelerator

kill_at, script = int(sys.argv[1]), sys.argv[2]
write_progress = accelerate.accelerator.save_custom_state


def die_inside_checkpoint(obj, path, *args, **kwargs):
    if os.path.basename(os.path.normpath(path)) == f"checkpoint_{kill_at}":
        os.kill(os.getpid(), signal.SIGKILL)
    return write_progress(obj, path, *args, **kwargs)


accelerate.accelerator.save_custom_state = die_inside_checkpoint
sys.argv = [script, *sys.argv[3:]]
runpy.run_path(script, run_name="__main__")
