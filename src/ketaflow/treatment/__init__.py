"""Treatment: protocols, dose calculation, the dosing-session state machine, monitoring,
discharge and scheduling, as pure modules (plain values in, decisions out; `now` is always a
parameter). The service, tables and API build on them:

- `protocols`: one protocol per drug and route, as data; `get_protocol`, `apply_overrides`.
- `dosing`: mg/kg, device and fixed doses, exact with Decimal; home doses.
- `monitoring`: readings, plausibility (422), alarms, due/missed planned readings, adverse
  events.
- `discharge`: every unmet discharge criterion.
- `rules`: the session state machine (`RuleViolation` -> 409).
- `scheduling`: induction series, boosters, maintenance, free chair slots, missed sessions.
"""
