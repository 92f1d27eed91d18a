"""Training of StyleGAN2 / ProGAN generators: CLI, loop, losses, EMA, checkpoints, data pipeline.

The entry point is ``training/train.py`` (``accelerate launch training/train.py``); :func:`training.loop.fit`
is the loop it drives, configured by a :class:`training.config.TrainConfig`.
"""
