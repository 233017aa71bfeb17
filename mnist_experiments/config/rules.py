"""Range rules, declared once on the schema's fields and checked everywhere from there.

A schema field that has a range is written ``epochs: int = bounded(5, ge=1)``. The
rule lives in the field's metadata, so :func:`mnist_experiments.config.validation.validate`
(``mnist-exp``, reproduce, evaluate, grade) checks every field of every section the same
way, and the message names the key, the bad value, the rule and an example fix.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from typing import Any, Collection, Optional


@dataclass(frozen=True)
class Bounds:
    """Allowed values of one field: an interval (each end open or closed) or a set."""

    ge: Optional[float] = None
    gt: Optional[float] = None
    le: Optional[float] = None
    lt: Optional[float] = None
    choices: Optional[Collection[str]] = None
    example: Any = None  # the value suggested in the message (default: the field's default)
    note: str = ""  # e.g. "or null for no pooling"

    def rule(self) -> str:
        """The rule in words: 'it must be at least 1', 'it must lie in [0, 1)', ..."""
        if self.choices is not None:
            return f"it must be one of {', '.join(sorted(self.choices))}"
        low = self.ge if self.ge is not None else self.gt
        high = self.le if self.le is not None else self.lt
        if low is not None and high is not None:
            if self.gt is not None and self.lt is not None:
                text = f"it must lie strictly between {_num(low)} and {_num(high)}"
            else:
                text = (f"it must lie in {'[' if self.ge is not None else '('}{_num(low)}, "
                        f"{_num(high)}{']' if self.le is not None else ')'}")
        elif self.ge is not None:
            text = f"it must be at least {_num(self.ge)}"
        elif self.gt is not None:
            text = "it must be a positive number" if self.gt == 0 else \
                f"it must be greater than {_num(self.gt)}"
        elif self.le is not None:
            text = f"it must be at most {_num(self.le)}"
        elif self.lt is not None:
            text = f"it must be less than {_num(self.lt)}"
        else:
            text = "it is invalid"
        return f"{text} ({self.note})" if self.note else text

    def allows(self, value: Any) -> bool:
        if self.choices is not None:
            return value in self.choices
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            return True  # types are the schema's job
        if isinstance(value, float) and not math.isfinite(value):
            return False
        return ((self.ge is None or value >= self.ge) and (self.gt is None or value > self.gt)
                and (self.le is None or value <= self.le) and (self.lt is None or value < self.lt))


def _num(x: float) -> str:
    if isinstance(x, float) and x.is_integer() and abs(x) < 1e15:
        return str(int(x))
    return f"{x:g}" if isinstance(x, float) else str(x)


# [0, 1): decay rates (beta_1, rho), fractions (alpha, augmentation amounts)
FRACTION = dict(ge=0.0, lt=1.0)


def bounded(default: Any = dataclasses.MISSING, *, default_factory: Any = dataclasses.MISSING,
            **bounds: Any) -> Any:
    """A dataclass field with a range rule (see :class:`Bounds`)."""
    kwargs = {"metadata": {"bounds": Bounds(**bounds)}}
    if default_factory is not dataclasses.MISSING:
        return field(default_factory=default_factory, **kwargs)
    return field(default=default, **kwargs)


def field_bounds(f: dataclasses.Field) -> Optional[Bounds]:
    return f.metadata.get("bounds") if f.metadata else None


def problem(key: str, value: Any, bounds: Bounds, default: Any) -> Optional[str]:
    """The message for ``key=value`` if it breaks ``bounds``, else None."""
    if value is None or bounds.allows(value):
        return None
    example = bounds.example if bounds.example is not None else default
    fix = f"Try {key}={_fmt(example)}." if _is_value(example) else ""
    return f"{key}={value!r} is invalid: {bounds.rule()}. {fix}".rstrip()


def _is_value(x: Any) -> bool:
    return x is not None and x is not dataclasses.MISSING and not isinstance(x, str) or (
        isinstance(x, str) and x != "???")


def _fmt(x: Any) -> str:
    return "null" if x is None else (str(x).lower() if isinstance(x, bool) else str(x))
