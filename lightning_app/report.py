"""Report commands: turn what a run recorded into the figures and numbers of the papers.

    python -m lightning_app.report lca RUN_DIR [--compare OTHER_RUN_DIR] [--json] [--sync-layers N]
        [--out FOLDER]

``lca`` reads ``RUN_DIR/lca.h5`` (or the store file given directly), writes PNG figures to
``RUN_DIR/lca_report/`` (or ``--out``) and prints a summary; with ``--json``, one JSON object. A store
that is cut short or fails its checksums is refused, naming what is damaged.
"""

import argparse
import json
from pathlib import Path

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
    numbers = write_report(store, compare=compare, min_layers=args.sync_layers, out=args.out)
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
    print(f"  synchronised peak moments: {peaks['synchronised_peaks']} "
          f"({peaks['synchronised_expected_by_chance']:.1f} expected by chance)")  # fmt: skip
    print("  figures:\n    " + "\n    ".join(numbers["figures"]))


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
    report.set_defaults(run=lca)
    run_subcommand(parser, argv)


if __name__ == "__main__":
    main()
