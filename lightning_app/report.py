"""Report commands: turn what a run recorded into the figures and numbers of the papers.

    python -m lightning_app.report lca RUN_DIR [--compare OTHER_RUN_DIR] [--json] [--sync-layers N]
        [--peak-window 1] [--peak-threshold T] [--null-draws 1000] [--out FOLDER]
    python -m lightning_app.report lca-sweep SWEEP_DIR [--json] [--out FOLDER]
    python -m lightning_app.report lca-replay RUN_DIR [--integrator adaptive] [--eval-split val]
        [--eval-size N] [--dense-every K --dense-fields lca,gradient,delta] [--out OUT_DIR]

``lca`` reads ``RUN_DIR/lca.h5`` (or the store file given directly), writes PNG figures to
``RUN_DIR/lca_report/`` (or ``--out``) and prints a summary; with ``--json``, one JSON object. A store
that is cut short or fails its checksums is refused, naming what is damaged. ``lca-sweep`` reads every
run with an LCA store under SWEEP_DIR (``python -m lightning_app.sweep`` puts a sweep's runs there) and
prints and writes the table of the sweep (learning rate, batch size, iterations, mean % of parameters
helped per iteration, and among those that moved, conservation error, final loss) as ``lca_sweep.csv``
and the grid of loss plots as ``lca_sweep_grid.png``. ``lca-replay`` recomputes a run's LCA from the
weight history its ``WeightHistory`` callback stored, with the run's settings (its dense records too) or
another integrator, evaluation set or dense records, into ``OUT_DIR/lca.h5`` (default
``RUN_DIR/lca_replay/``), without training again; a damaged history is refused before anything is
written, and a replay that stops leaves ``lca.partial.h5``, never an ``lca.h5`` that looks complete.
"""

import argparse
import json
from pathlib import Path

from callbacks.lca.analysis import NULL_DRAWS, PeakRule
from lightning_app.errors import UserInputError, run_subcommand


def store_path(run: str) -> Path:
    """The LCA store of a run folder, or the store file itself."""
    path = Path(run)
    if path.is_dir() and not (path / "lca.h5").is_file():
        raise UserInputError(
            f"{path} holds no lca.h5: was it trained with the LossChangeAllocation callback?"
        )
    return path / "lca.h5" if path.is_dir() else path


def lca(args: argparse.Namespace) -> None:
    from callbacks.lca.report import write_report

    store = store_path(args.run_dir)
    compare = store_path(args.compare) if args.compare else None
    rule = PeakRule(window=args.peak_window, threshold=args.peak_threshold)
    numbers = write_report(
        store, compare=compare, min_layers=args.sync_layers, out=args.out, rule=rule, draws=args.null_draws
    )
    if args.json:
        print(json.dumps(numbers))
        return
    print(f"LCA of {store} ({numbers['integrator']}, {numbers['iterations']} iterations, "
          f"{numbers['parameters']:,} parameters)")  # fmt: skip
    print(f"  loss change {numbers['loss_change']:.6f}, sum of LCA {numbers['lca_sum']:.6f}, "
          f"conservation error {100 * (numbers['conservation_rel_error'] or 0):.4f}%")  # fmt: skip
    print(f"  helped {100 * numbers['mean_helped_fraction']:.2f}% of parameters per iteration "
          f"({100 * numbers['mean_helped_fraction_nonzero']:.2f}% of those that moved)")  # fmt: skip
    peaks = numbers["peak_moments"]
    print(f"  synchronised peak moments: {peaks['synchronised_peaks']} found; expected "
          f"{peaks['synchronised_expected_independent']:.1f} if layers peaked independently, "
          f"{peaks['synchronised_expected_under_shift']:.1f} under circular shifts of each layer "
          f"(p = {peaks['synchronised_p_value']:.3g}, {peaks['null_draws']} draws)")  # fmt: skip
    print("  figures:\n    " + "\n    ".join(numbers["figures"]))


def cell_text(value) -> str:
    return f"{value:.4g}" if isinstance(value, float) else str(value)


def lca_sweep(args: argparse.Namespace) -> None:
    from callbacks.lca.sweep_summary import COLUMNS, write_sweep_summary

    folder = Path(args.sweep_dir)
    if not folder.is_dir():
        raise UserInputError(
            f"{folder} is not a folder; give the sweep's run folder, e.g. runs/lca_mnist_fc_sweep"
        )
    numbers = write_sweep_summary(folder, Path(args.out) if args.out else None)
    if args.json:
        print(json.dumps(numbers))
        return
    rows = [[cell_text(row[column]) for column in COLUMNS] for row in numbers["runs"]]
    widths = [max(len(cell) for cell in column) for column in zip(COLUMNS, *rows, strict=True)]
    for line in [list(COLUMNS), *rows]:
        print("  ".join(cell.ljust(width) for cell, width in zip(line, widths, strict=True)).rstrip())
    print(f"table: {numbers['table']}\nfigure: {numbers['figure']}")


def lca_replay(args: argparse.Namespace) -> None:
    from callbacks.lca.replay import replay

    run_dir = Path(args.run_dir)
    out = Path(args.out) if args.out else run_dir / "lca_replay"
    fields = args.dense_fields.split(",") if args.dense_fields else None
    store = replay(
        run_dir, out, integrator=args.integrator, eval_split=args.eval_split, eval_size=args.eval_size,
        dense_every=args.dense_every, dense_fields=fields,
    )  # fmt: skip
    print(f"replayed LCA: {store}; the figures and numbers: python -m lightning_app.report lca {store}")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m lightning_app.report", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)  # fmt: skip
    commands = parser.add_subparsers(dest="command", required=True)
    report = commands.add_parser("lca", help="figures and numbers of a run's Loss Change Allocation")
    report.add_argument("run_dir", help="the run folder (runs/<config>/version_N) or its lca.h5")
    report.add_argument("--compare", help="a second run drawn hatched in the per-layer bars")
    report.add_argument("--json", action="store_true", help="print the numbers as one JSON object")
    report.add_argument("--out", help="write the figures here instead of RUN_DIR/lca_report/")
    report.add_argument(
        "--sync-layers",
        type=int,
        default=None,
        help="layers peaking together to count as synchronised (default: all)",
    )
    report.add_argument(
        "--peak-window", type=int, default=1,
        help="a peak is below this many neighbours on each side (default 1: the LCA paper's local minima)",
    )  # fmt: skip
    report.add_argument(
        "--peak-threshold", type=float, default=None,
        help="a peak's LCA must also be below minus this (default: none, as the paper)",
    )  # fmt: skip
    report.add_argument(
        "--null-draws", type=int, default=NULL_DRAWS, help="circular shifts of the synchronisation null"
    )
    report.set_defaults(run=lca)
    sweep = commands.add_parser(
        "lca-sweep", help="the table and grid figure of a sweep's LCA runs (learning rate x batch size)"
    )
    sweep.add_argument("sweep_dir", help="the sweep's run folder, e.g. runs/lca_mnist_fc_sweep")
    sweep.add_argument("--json", action="store_true", help="print the rows as one JSON object")
    sweep.add_argument("--out", help="write lca_sweep.csv and lca_sweep_grid.png here instead")
    sweep.set_defaults(run=lca_sweep)
    replay = commands.add_parser(
        "lca-replay", help="recompute a run's LCA from its weight history (the WeightHistory callback)"
    )
    replay.add_argument("run_dir", help="the run folder, holding weights.h5 and config.yaml")
    replay.add_argument("--integrator", choices=["first_order", "rk4", "adaptive"], help="default: the run's")
    replay.add_argument("--eval-split", choices=["train", "val", "test"], help="default: the run's (train)")
    replay.add_argument("--eval-size", type=int, help="examples of the split (default: the run's)")
    replay.add_argument(
        "--dense-every", type=int, help="store per-parameter vectors every k-th step (default: the run's)"
    )
    replay.add_argument(
        "--dense-fields", help="which, with --dense-every: lca,gradient,delta (default: the run's)"
    )
    replay.add_argument("--out", help="folder of the new store (default RUN_DIR/lca_replay)")
    replay.set_defaults(run=lca_replay)
    run_subcommand(parser, argv)


if __name__ == "__main__":
    main()
