"""The ``flatgen`` command line: parse arguments, run an experiment, print a summary.

Everything it does is in :mod:`flatgen.experiments`; this module only turns
arguments into a call and errors into one line on stderr.
"""

import argparse
import os
import sys
import traceback

_EXIT_ERROR = 1
_EXIT_USAGE = 2
_EXIT_INTERRUPTED = 130


class _Parser(argparse.ArgumentParser):
    """Argument parser whose errors are one line, without the usage block."""

    def error(self, message):
        """Print ``message`` as one line on stderr and exit with status 2."""
        self.exit(_EXIT_USAGE, f"{self.prog}: error: {message}\n")


def _positive_int(text):
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"must be a positive integer, got {text!r}"
        ) from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {value}")
    return value


def _seed(text):
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"must be an integer from 0 to 2**32 - 1, got {text!r}"
        ) from None
    if not 0 <= value < 2**32:
        raise argparse.ArgumentTypeError(
            f"must be an integer from 0 to 2**32 - 1, got {value}"
        )
    return value


def _n_jobs(text):
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"must be a positive integer or -1 for all cores, got {text!r}"
        ) from None
    if value == 0 or value < -1:
        raise argparse.ArgumentTypeError(
            f"must be a positive integer or -1 for all cores, got {value}"
        )
    return value


def _factor(text):
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"must be a non-negative number, got {text!r}"
        ) from None
    if not value >= 0 or value == float("inf"):
        raise argparse.ArgumentTypeError(f"must be a non-negative number, got {text}")
    return value


def _common(parser, name):
    parser.add_argument(
        "--out",
        default=os.path.join("results", name),
        help="output folder; rerunning with the same folder resumes an "
        "interrupted run (default: %(default)s)",
    )
    parser.add_argument(
        "--random-state",
        type=_seed,
        default=0,
        help="seed of everything; the same seed gives the same numbers "
        "(default: %(default)s)",
    )
    parser.add_argument(
        "--n-jobs",
        type=_n_jobs,
        default=1,
        help="parallel workers over fits and measurements, -1 for all cores "
        "(default: %(default)s)",
    )
    parser.add_argument(
        "--device", default="cpu", help="torch device, e.g. cuda (default: cpu)"
    )
    parser.add_argument(
        "--quick",
        action="store_true",
        help="toy sizes: every step and file in about a minute, for checks and CI",
    )
    parser.add_argument(
        "--poison-factors",
        type=_factor,
        nargs="+",
        metavar="BETA",
        help="poison factors of the sweep (default: the preset's)",
    )
    parser.add_argument(
        "--max-iter",
        type=_positive_int,
        metavar="N",
        help="training steps (epochs) per network (default: the preset's)",
    )
    parser.add_argument(
        "--n-directions",
        type=_positive_int,
        metavar="N",
        help="random directions per volume estimate (default: the preset's)",
    )
    parser.add_argument(
        "--quiet", action="store_true", help="no progress bars, only the summary"
    )
    parser.add_argument(
        "--debug",
        action="store_true",
        help="on an error, print the full traceback instead of one line",
    )


def build_parser():
    """Return the argument parser of the ``flatgen`` command."""
    from . import __version__

    parser = _Parser(
        prog="flatgen",
        description="Run the experiments of 'Understanding Generalization through "
        "Visualizations' (Huang et al., 2019) and write figures, summary.json "
        "and report.md.",
    )
    parser.add_argument("--version", action="version", version=f"flatgen {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")
    commands.required = True
    swissroll = commands.add_parser(
        "swissroll",
        help="clean vs poisoned networks and an SVC on the swiss roll (the main job)",
        description="Clean vs poisoned networks and an RBF SVC on the swiss roll: "
        "decision boundaries, poison sweep, basin cross-sections, log-volume vs "
        "generalization gap, margins and the perturbation animation.",
    )
    _common(swissroll, "swissroll")
    digits = commands.add_parser(
        "digits",
        help="the poison sweep on scikit-learn's 8x8 digits with a CNN and an SVC",
        description="Poison sweep, log-volume vs generalization gap and an SVC "
        "baseline on scikit-learn's 8x8 digits.",
    )
    _common(digits, "digits")
    svhn = commands.add_parser(
        "svhn",
        help="the paper's SVHN setting from the standard .mat files",
        description="The SVHN poison sweep from train_32x32.mat, test_32x32.mat and "
        "extra_32x32.mat (the poison set). Nothing is downloaded.",
    )
    _common(svhn, "svhn")
    svhn.add_argument(
        "--data-dir",
        required=True,
        help="folder holding train_32x32.mat, test_32x32.mat and extra_32x32.mat",
    )
    svhn.add_argument(
        "--subset",
        type=_positive_int,
        metavar="N",
        help="training and test images drawn from the files (default: 1000, "
        "100 with --quick)",
    )
    svhn.add_argument(
        "--poison-source",
        choices=("extra", "jitter"),
        default="extra",
        help="draw the poison set from the extra split (the paper) or around the "
        "training images (default: %(default)s)",
    )
    return parser


def _capped_n_jobs(n_jobs):
    """Return ``n_jobs`` capped at the usable cores, saying so in one line.

    Every worker holds a torch runtime and a copy of the data (hundreds of
    MB), so more workers than cores only cost memory and time.
    """
    from .experiments._runner import usable_cores

    cores = usable_cores()
    if n_jobs == -1:
        return cores
    if n_jobs > cores:
        print(
            f"flatgen: --n-jobs {n_jobs} is more than the {cores} usable CPU "
            f"cores; using {cores}.",
            file=sys.stderr,
        )
        return cores
    return n_jobs


def _run(args):
    from . import experiments
    from .experiments._report import format_summary

    common = {
        "quick": args.quick,
        "random_state": args.random_state,
        "n_jobs": _capped_n_jobs(args.n_jobs),
        "device": args.device,
        "poison_factors": args.poison_factors,
        "max_iter": args.max_iter,
        "n_directions": args.n_directions,
        "verbose": 0 if args.quiet else 1,
    }
    if args.command == "svhn":
        result = experiments.run_svhn(
            args.out,
            args.data_dir,
            subset=args.subset,
            poison_source=args.poison_source,
            **common,
        )
    else:
        run = getattr(experiments, f"run_{args.command}")
        result = run(args.out, **common)
    print(format_summary(result, args.out))


def _one_line(exc):
    text = " ".join(str(exc).split()) or type(exc).__name__
    return text


def _interrupted(args):
    steps = os.path.join(args.out, "steps") if args is not None else None
    where = (
        f"; finished steps are kept in {steps}: run the same command again to "
        "resume."
        if steps is not None
        else "."
    )
    print(f"flatgen: interrupted{where}", file=sys.stderr)
    return _EXIT_INTERRUPTED


def main(argv=None):
    """Run the ``flatgen`` command; return its exit status.

    Parameters
    ----------
    argv : list of str, default=None
        Arguments without the program name; ``sys.argv[1:]`` when None.

    Returns
    -------
    status : int
        0 on success, 1 when the run failed, 2 for bad arguments, 130 when
        interrupted (at any point, start-up included). Errors are one line on
        stderr; ``--debug`` prints the traceback instead.
    """
    args = None
    try:
        parser = build_parser()
        try:
            args = parser.parse_args(argv)
        except SystemExit as exit_:
            return exit_.code if isinstance(exit_.code, int) else _EXIT_USAGE
        _run(args)
    except KeyboardInterrupt:
        return _interrupted(args)
    except Exception as exc:  # noqa: BLE001 - the command line reports, never traces
        if args is not None and args.debug:
            traceback.print_exc()
        command = f" {args.command}" if args is not None else ""
        print(f"flatgen{command}: error: {_one_line(exc)}", file=sys.stderr)
        return _EXIT_ERROR
    return 0


if __name__ == "__main__":
    sys.exit(main())
