"""The value a written reasoning step computes: the number right after its last `=`."""

import re

# Optional sign and currency, then an integer (with or without thousands commas) and decimals.
_VALUE = re.compile(r"\s*(-?)\s*(?:\\?\$)?\s*(\d{1,3}(?:,\d{3})+|\d+)(\.\d+)?")


def value_after_last_equals(step: str) -> str:
    """`"9 * 2 = $18 a day"` -> `"18"`; `""` when there is no `=` or no number right after it."""
    _, equals, tail = step.rpartition("=")
    if not equals:
        return ""
    match = _VALUE.match(tail)
    if match is None:
        return ""
    sign, integer, decimals = match.groups()
    return sign + integer.replace(",", "") + (decimals or "")
