"""Train, validate, test or predict from a YAML config.

    python train.py fit --config configs/quickstart.yaml

``python train.py --help`` lists the subcommands; ``python train.py fit --help`` every option.
"""

from lightning_app.cli import main

if __name__ == "__main__":
    main()
