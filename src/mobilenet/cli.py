"""The ``mobilenet`` command: a thin argparse front over the library. No logic lives here."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable, Sequence
from typing import Any

__all__ = ["main"]

_COMMANDS: dict[str, Callable[[argparse.Namespace], int | None]] = {}


def _command(name: str) -> Callable[[Callable[[argparse.Namespace], int | None]], Callable[[argparse.Namespace], int | None]]:
    def register(fn: Callable[[argparse.Namespace], int | None]) -> Callable[[argparse.Namespace], int | None]:
        _COMMANDS[name] = fn
        return fn

    return register


def _print_json(obj: Any) -> None:
    json.dump(obj, sys.stdout, indent=2)
    sys.stdout.write("\n")


def _add_arch_args(p: argparse.ArgumentParser, *, defaults: bool = True) -> None:
    p.add_argument("--width-mult", "-a", type=float, default=1.0 if defaults else None, help="width multiplier α (default 1.0)")
    p.add_argument(
        "--resolution",
        "-r",
        type=int,
        default=224 if defaults else None,
        help="input size, the resolution multiplier ρ·224 (default 224)",
    )
    p.add_argument(
        "--variant",
        choices=["separable", "conv", "shallow"],
        default="separable" if defaults else None,
        help="separable = the paper's net; conv = Table 4's Conv MobileNet; shallow = Table 5's",
    )


@_command("cost")
def _cost(args: argparse.Namespace) -> None:
    from .cost import model_cost

    report = model_cost(
        width_mult=args.width_mult, resolution=args.resolution, num_classes=args.num_classes, variant=args.variant
    )
    if args.json:
        _print_json(report.to_dict())
    else:
        print(report.format_table(per_layer=args.per_layer))


@_command("paper")
def _paper(args: argparse.Namespace) -> int:
    from .paper import compare, format_comparison

    rows = compare()
    if args.json:
        _print_json([r.to_dict() for r in rows])
    else:
        print(format_comparison(rows))
    return 0 if all(r.status != "DISAGREES" for r in rows) else 1


def build_parser() -> argparse.ArgumentParser:
    from . import __version__

    parser = argparse.ArgumentParser(
        prog="mobilenet", description="MobileNet v1, paper-exact: cost model, training, Google's weights, export."
    )
    parser.add_argument("--version", action="version", version=f"mobilenet {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    p = sub.add_parser("cost", help="Mult-Adds and params for any α, resolution, class count and variant")
    _add_arch_args(p)
    p.add_argument("--num-classes", type=int, default=1000)
    p.add_argument("--per-layer", action="store_true", help="print one row per layer, as Table 1")
    p.add_argument("--json", action="store_true", help="machine-readable output (always includes the per-layer rows)")

    p = sub.add_parser("paper", help="the paper's printed cost tables next to ours")
    p.add_argument("--json", action="store_true")

    for register in _EXTRA_PARSERS:
        register(sub)
    return parser


_EXTRA_PARSERS: list[Callable[[Any], None]] = []


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 2
    try:
        return int(_COMMANDS[args.command](args) or 0)
    except (ValueError, FileNotFoundError, RuntimeError) as exc:
        # Library errors are written for people; show them without a traceback.
        print(f"mobilenet {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
