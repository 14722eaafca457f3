"""The kit's tables as numpy arrays: nanosecond columns kept exact, yes/no columns as bools."""

from __future__ import annotations

import numpy as np
import pandas as pd

__all__ = ["NEVER", "ns", "as_bool", "column"]


# Time columns are int64 nanoseconds; int64 keeps them exact (float64 would round
# monotonic_ns() values on a machine that has been up for more than ~100 days).
NEVER = np.iinfo(np.int64).max


def ns(column: pd.Series, missing: int = NEVER) -> np.ndarray:
    """A nanosecond column as an int64 array, with missing values replaced by ``missing``."""
    return pd.to_numeric(column).astype("Int64").fillna(missing).to_numpy(dtype="int64")


def as_bool(column: pd.Series) -> pd.Series:
    """A yes/no column (``ok``) as plain bools; a missing value counts as no."""
    return column.astype("boolean").fillna(False).astype(bool)


def column(frame: pd.DataFrame, *names: str) -> pd.Series:
    """The first of ``names`` that ``frame`` has (a client table or a joined one)."""
    for name in names:
        if name in frame:
            return frame[name]
    raise KeyError(f"none of the columns {names} is in the table")


