"""Layer 7, tools: the commands that read checkpoints (``python -m lvm.tools.embed``, ``explore``, ``trust``,
``compare``, ``upgrade_checkpoint``)."""
