"""Summaries of repeated benchmark passes: one median per number, with its spread."""

from __future__ import annotations

import statistics


def median_rows(passes: list[dict]) -> dict:
    """passes: [{method: {key: value}}] -> {method: {key: median, key_min, key_max}}.

    Booleans (e.g. "equals AR") hold only if they held in every pass; None stays None.
    """
    out: dict = {}
    for m in passes[0]:
        out[m] = {}
        for key, value in passes[0][m].items():
            values = [p[m][key] for p in passes]
            if value is None or isinstance(value, bool):
                out[m][key] = None if value is None else all(values)
            else:
                out[m][key] = statistics.median(values)
                out[m][key + "_min"], out[m][key + "_max"] = min(values), max(values)
    return out
