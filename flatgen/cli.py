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


def _number(kind, accepts):
    """Return an argparse type: a finite float that ``accepts``, else ``kind``."""

    def parse(text):
        try:
            value = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(
                f"must be a {kind} number, got {text!r}"
            ) from None
        if not accepts(value) or value == float("inf"):
            raise argparse.ArgumentTypeError(f"must be a {kind} number, got {text}")
        return value

    return parse


# NaN fails both comparisons, so it is refused too.
_factor = _number("non-negative", lambda value: value >= 0)
_cutoff = _number("positive", lambda value: value > 0)


def _common(parser, name):
    from .experiments._spec import ANNEALED_MEASURES
    from .experiments.specs import get_spec

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
    measures = get_spec(name).measures
    if any(m in ANNEALED_MEASURES for m in measures):
        which = (
            "every MLP's basin volume is also measured by annealing and ranked"
            if "study_volume" in measures
            else "the clean and the most poisoned network's basin volume is "
            "also measured by annealing"
        )
        preset = get_spec(name).full.get("annealed_cutoffs") or []
        default = (
            " ".join(f"{c:g}" for c in preset) + ", none with --quick"
            if preset
            else "none"
        )
        annealed = parser.add_mutually_exclusive_group()
        annealed.add_argument(
            "--annealed-cutoffs",
            type=_cutoff,
            nargs="+",
            metavar="CE",
            help=f"training cross-entropies at which {which}, with intervals "
            f"(minutes per network; default: {default})",
        )
        annealed.add_argument(
            "--no-annealed",
            dest="annealed_cutoffs",
            action="store_const",
            const=[],
            help="measure no basin volume by annealing",
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
    from .experiments.specs import get_spec, spec_names

    parser = _Parser(
        prog="flatgen",
        description="Run the experiments of 'Understanding Generalization through "
        "Visualizations' (Huang et al., 2019) and write figures, summary.json "
        "and report.md.",
    )
    parser.add_argument("--version", action="version", version=f"flatgen {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")
    commands.required = True
    # One subcommand per shipped experiment spec, with the spec's own options.
    for name in spec_names():
        spec = get_spec(name)
        command = commands.add_parser(
            name, help=spec.help, description=spec.description
        )
        _common(command, name)
        for option in spec.options:
            flag = "--" + option.name.replace("_", "-")
            kwargs = {"help": option.help, "required": option.required}
            if option.positive_int:
                kwargs.update(type=_positive_int, metavar="N")
            if option.choices is not None:
                kwargs["choices"] = option.choices
            if option.default is not None:
                kwargs["default"] = option.default
                kwargs["help"] += " (default: %(default)s)"
            command.add_argument(flag, **kwargs)
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
    from .experiments.specs import get_spec

    common = {
        "quick": args.quick,
        "random_state": args.random_state,
        "n_jobs": _capped_n_jobs(args.n_jobs),
        "device": args.device,
        "verbose": 0 if args.quiet else 1,
    }
    # Overrides only when given: an experiment without volumes (the study)
    # takes no --n-directions, and says so.
    for name in ("poison_factors", "max_iter", "n_directions", "annealed_cutoffs"):
        if getattr(args, name, None) is not None:
            common[name] = getattr(args, name)
    spec = get_spec(args.command)
    options = {option.name: getattr(args, option.name) for option in spec.options}
    # A shipped experiment runs through its documented run_* function.
    run = getattr(experiments, f"run_{args.command}", None)
    if run is None:
        result = experiments.run_experiment(spec, args.out, **common, **options)
    else:
        result = run(args.out, **common, **options)
    print(format_summary(result, args.out))


def _one_line(exc):
    text = " ".join(str(exc).split()) or type(exc).__name__
    return text


def _interrupted(args):
    steps = os.path.join(args.out, "steps") if args is not None else None
    where = (
        f"; finished steps are kept in {steps}: run the same command again to resume."
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
