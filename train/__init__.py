"""Training (installed as `onediff_idc.train`): Coupled Sample Training on accelerate and multi-task SFT with TRL,
launched as `accelerate launch train/<script>.py --config train/configs/<recipe>.yaml`. Built out by the training
issue. Never name a file here after a library (`datasets.py`, `trl.py`): `accelerate launch` puts this folder first
on `sys.path`."""
