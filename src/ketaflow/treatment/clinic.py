"""A clinic's own configuration for treatment: opening hours, protocol overrides, therapy policy.

Read from the JSON file named by KETAFLOW_CLINIC_CONFIG_FILE (optional); everything has a
default, so a clinic configures only what it changes. Protocol overrides are validated by
`protocols.apply_overrides`, which refuses loosening a label floor.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from datetime import time
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from ketaflow.core.errors import InvalidInput
from ketaflow.core.settings import Settings
from ketaflow.therapy.policy import TherapyPolicy
from ketaflow.treatment.protocols import Protocol, ProtocolId, get_protocol
from ketaflow.treatment.scheduling import OpeningHours

# Weekday 0 = Monday. A typical outpatient week; clinics set their own.
DEFAULT_WEEKLY_HOURS: dict[int, tuple[time, time]] = {
    day: (time(8, 0), time(18, 0)) for day in range(5)
} | {5: (time(9, 0), time(13, 0))}


class ClinicConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    opening_hours: OpeningHours
    protocol_overrides: dict[ProtocolId, dict[str, Any]] = Field(default_factory=dict)
    therapy_policy: TherapyPolicy = TherapyPolicy()
    # A scheduled session not checked in this long after its start is marked missed.
    missed_grace_minutes: int = Field(default=60, ge=5, le=24 * 60)

    def protocol(self, protocol_id: ProtocolId | str) -> Protocol:
        return get_protocol(protocol_id, self.protocol_overrides)


def load_clinic_config(settings: Settings, path: str | Path | None = None) -> ClinicConfig:
    data: Mapping[str, Any] = {}
    source = path or settings.clinic_config_file
    if source:
        try:
            data = json.loads(Path(source).read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError) as exc:
            raise InvalidInput(
                f"cannot read {source}: {exc}", field_name="clinic_config_file"
            ) from exc
    raw = dict(data)
    hours = dict(raw.pop("opening_hours", {}))
    hours.setdefault("weekly", DEFAULT_WEEKLY_HOURS)
    hours["timezone"] = settings.clinic_timezone
    try:
        config = ClinicConfig(opening_hours=OpeningHours(**hours), **raw)
        for protocol_id in config.protocol_overrides:
            config.protocol(protocol_id)  # validates every override now, not at first use
    except InvalidInput as exc:
        raise InvalidInput(
            f"clinic configuration: protocol_overrides: {exc.detail}",
            field_name="clinic_config_file",
        ) from exc
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"])
        raise InvalidInput(
            f"clinic configuration: {where}: {first['msg']}", field_name="clinic_config_file"
        ) from exc
    return config
