"""Train and test a latent variable model: ``python train.py --config configs/quickstart.yaml``."""

import sys

from lvm.runs.usage import handle_help

if __name__ == "__main__":
    argv = handle_help(sys.argv[1:])  # the short --help needs no Lightning: printed before importing it
    if argv is None:
        sys.exit(0)
    sys.argv[1:] = argv
    from lvm.runs.cli import main

    main()
