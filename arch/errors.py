"""The one exception type for bad user input; the CLI prints it on one line and exits with status 2."""
from __future__ import annotations

import difflib
import warnings
from collections.abc import Iterable


class InputError(ValueError):
    """Bad input named by a dotted path: e.g. `memory.dram.capacity_bytes: must be > 0`."""

    def __init__(self, problems: list[tuple[str, str]] | str):
        if isinstance(problems, str):
            problems = [("", problems)]
        self.problems = list(dict.fromkeys(problems))      # one check run twice (a raw pass, then the built one)
        text = "; ".join(f"{p}: {m}" if p else m for p, m in self.problems)
        # user text (a key, a file name) may hold line breaks: escape them so the message stays one line
        super().__init__(text.replace("\r", "\\r").replace("\n", "\\n"))


def did_you_mean(word: str, allowed: Iterable[str]) -> str:
    """' (did you mean X?)' when a close match exists, else ''."""
    close = difflib.get_close_matches(word, list(allowed), n=1, cutoff=0.6)
    return f" (did you mean '{close[0]}'?)" if close else ""


def allowed_list(allowed: Iterable[str]) -> str:
    """A sorted, comma-separated list of allowed names for messages."""
    return ", ".join(sorted(allowed))


def field_error(field: str, message: str) -> InputError:
    """Bad input named by an option field (`seq_len`, `dims batch`): the Python API shows the field, the CLI its flag
    (`--seq-len`, `--dim batch`)."""
    return InputError([(field, message)])


class ArchWarning(UserWarning):
    """An input that loads but is probably not what was meant (800 Hz for 800 MHz), or a deprecated spelling; the CLI
    prints each on one stderr line as `tilesim: warning: ...`."""


def arch_warning(message: str) -> None:
    """Warn about an input (once per distinct message and place, as Python's warnings do)."""
    warnings.warn(message, ArchWarning, stacklevel=3)
