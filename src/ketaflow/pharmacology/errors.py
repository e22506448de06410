"""The one error the pharmacology engine raises for bad input."""

from __future__ import annotations


class PKInputError(ValueError):
    """An input the engine cannot accept; `parameter` names it (e.g. "dose", "route")."""

    def __init__(self, parameter: str, message: str) -> None:
        super().__init__(message)
        self.parameter = parameter
