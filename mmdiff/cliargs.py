"""What every command line of the project shares for bad input: argparse types that refuse impossible numbers
at parse time, and the one-line `error: ...` with exit status 2 for errors found later.

Parse-time refusals go through argparse (usage line + `prog: error: --flag: ...`, status 2), the shape
`mmdiff.data.prepare` and `eval.run` already have; `fail` prints the same one line for errors found while
running (a missing checkpoint, an unusable upload), never a traceback.
"""
from __future__ import annotations

import argparse
import math
import sys

MAX_SEED = 2**53 - 1          # exact as a JSON / JavaScript number, and far from torch's signed 64-bit limit
                              # (seed + batch or step offsets stay valid)


def _number(kind, text: str):
    try:
        value = kind(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected {'a whole number' if kind is int else 'a number'}, "
                                         f"got {text!r}") from None
    if kind is float and not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"expected a finite number, got {text!r}")
    return value


def int_at_least(low: int, high: int | None = None):
    """argparse type: a whole number >= low (and <= high)."""
    def parse(text: str) -> int:
        value = _number(int, text)
        if value < low or (high is not None and value > high):
            raise argparse.ArgumentTypeError(
                f"must be a whole number >= {low}" + (f" and <= {high}" if high is not None else "") + f", got {value}")
        return value

    parse.__name__ = "int"           # argparse names the type in its messages
    return parse


def float_in(low: float, high: float | None = None, low_open: bool = False, high_open: bool = False):
    """argparse type: a finite number in [low, high] (open ends with low_open / high_open)."""
    def parse(text: str) -> float:
        value = _number(float, text)
        bad = value < low or (low_open and value == low) or (
            high is not None and (value > high or (high_open and value == high)))
        if bad:
            lo, hi = "(" if low_open else "[", ")" if high_open else "]"
            rng = f"in {lo}{low:g}, {high:g}{hi}" if high is not None else f"{'>' if low_open else '>='} {low:g}"
            raise argparse.ArgumentTypeError(f"must be {rng}, got {text}")
        return value

    parse.__name__ = "float"
    return parse


positive_int = int_at_least(1)
non_negative_int = int_at_least(0)
seed_int = int_at_least(0, MAX_SEED)
positive_float = float_in(0.0, low_open=True)
non_negative_float = float_in(0.0)


def fail(message: object) -> int:
    """Print `error: message` (one line) to stderr; returns the exit status 2 for `return fail(...)`."""
    text = " ".join(str(message).split("\n"))
    print(f"error: {text}", file=sys.stderr)
    return 2
