"""Station software: the agent that runs trains at a data-holding station under its administrator's control.

A top-level package of its own (not in ``orchestrator/`` or ``station_mpu/``) because it runs at the
hospital, next to the data, and must not import the central service. See ``docs/architecture.md``.
"""
