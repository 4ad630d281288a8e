"""Train and test a latent variable model: ``python train.py --config configs/quickstart.yaml``."""

from lvm.runs.cli import main

if __name__ == "__main__":
    main()
