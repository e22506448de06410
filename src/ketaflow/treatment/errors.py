"""Typed refusals raised by the pure treatment rules.

`RuleViolation` subclasses the core one, so the core layer's problem+json mapping (409) applies
unchanged; it adds the session state the action was refused in. `InvalidReading` and
`InvalidProtocolOverride` subclass the core `InvalidInput` (422): they are impossible values, not
actions out of order. Standard library and `ketaflow.core.errors` only, so pure modules may
raise them.
"""

from __future__ import annotations

from collections.abc import Iterable

from ketaflow.core.errors import InvalidInput, Reason
from ketaflow.core.errors import RuleViolation as _CoreRuleViolation

__all__ = ["InvalidProtocolOverride", "InvalidReading", "Reason", "RuleViolation"]


class RuleViolation(_CoreRuleViolation):
    """An action a rule refuses. `code` is stable (e.g. ``invalid_transition``,
    ``discharge_criteria_unmet``); `reasons` lists every unmet rule, each naming its rule id and
    source; `state` is the session state the action was attempted in, when there is one."""

    def __init__(
        self,
        code: str,
        reasons: Iterable[Reason],
        *,
        state: str | None = None,
        detail: str | None = None,
    ) -> None:
        reason_list = list(reasons)
        if not reason_list:
            raise ValueError("a RuleViolation needs at least one reason")
        if detail is None:
            where = f" (session state: {state})" if state else ""
            detail = "; ".join(r.message for r in reason_list) + where
        super().__init__(detail=detail, code=code, reasons=tuple(reason_list))
        # The brief's interface is a list; the core dataclass field holds the same reasons.
        self.reasons = reason_list  # type: ignore[assignment]
        self.state = state

    def extensions(self) -> dict[str, object]:
        extensions = super().extensions()
        if self.state is not None:
            extensions["state"] = self.state
        return extensions

    @property
    def rule_ids(self) -> list[str]:
        return [r.rule_id for r in self.reasons]


class InvalidReading(InvalidInput):
    """A reading with physiologically impossible values; `errors` names every bad field."""

    def __init__(self, errors: Iterable[tuple[str, str]]) -> None:
        error_list = list(errors)
        if not error_list:
            raise ValueError("an InvalidReading needs at least one error")
        field_name = error_list[0][0]
        super().__init__(detail="; ".join(m for _, m in error_list), field_name=field_name)
        self.errors = error_list

    def extensions(self) -> dict[str, object]:
        return {"errors": [{"field": f, "message": m} for f, m in self.errors]}


class InvalidProtocolOverride(InvalidInput):
    """A clinic setting that would make a protocol invalid or loosen a labelled floor."""

    def __init__(self, errors: Iterable[tuple[str, str]]) -> None:
        error_list = list(errors)
        if not error_list:
            raise ValueError("an InvalidProtocolOverride needs at least one error")
        field_name, _ = error_list[0]
        super().__init__(
            detail="; ".join(f"{f}: {m}" for f, m in error_list), field_name=field_name
        )
        self.errors = error_list

    def extensions(self) -> dict[str, object]:
        return {"errors": [{"field": f, "message": m} for f, m in self.errors]}
