"""Encoding that proves a value holds no NaN or infinity, at C's speed."""

from __future__ import annotations

import json
from typing import Any


def encode_finite(encoder: json.JSONEncoder, o: Any) -> str | None:
    """``o`` encoded by ``encoder`` with NaN and infinities refused, or ``None``
    when it holds one (or another value JSON cannot hold).

    Both clients must send NaN as ``null``; encoding with them refused lets
    the common message, which has none, pass at the cost of one encoding,
    and leaves the slow replacement to the rare one that has.
    """
    encoder.allow_nan = False
    try:
        return json.JSONEncoder.encode(encoder, o)
    except ValueError:
        return None
    finally:
        encoder.allow_nan = True
