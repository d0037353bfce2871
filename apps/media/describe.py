"""Short text for people: sizes, optional numbers, and the classifiers' answers in a reply."""

from __future__ import annotations

from typing import Any


def human_bytes(size: float) -> str:
    """1234567 -> "1.2 MB" (SI units, as network figures are)."""
    if abs(size) < 1000:
        return f"{size:.0f} B"
    for unit in ("kB", "MB", "GB"):
        size /= 1000
        if abs(size) < 1000 or unit == "GB":
            break
    return f"{size:.1f} {unit}"


def opt(value: float | int | None, spec: str = "") -> str:
    """A figure, or "-" when the transport did not report it."""
    return "-" if value is None else format(value, spec)


def classification_answers(value: Any) -> list[str]:
    """ "classifier: answer (confidence)" for each classifier result found anywhere in ``value``.

    Registry results are dicts with "classifier" and either "answer" (+ "confidence") or "error";
    they may come alone, in a list, or nested in a dict keyed by classifier.
    """
    found: list[str] = []
    if isinstance(value, list):
        for item in value:
            found += classification_answers(item)
    elif isinstance(value, dict):
        if "answer" in value:
            confidence = value.get("confidence")
            tail = f" ({confidence:.0%})" if isinstance(confidence, int | float) else ""
            found.append(f"{value.get('classifier', '?')}: {value['answer']}{tail}")
        elif "error" in value and "classifier" in value:
            found.append(f"{value['classifier']}: error: {value['error']}")
        else:
            for item in value.values():
                found += classification_answers(item)
    return found
