"""``axion stage3 prepare``: real data in, tiles out (also ``--check`` and ``--demo``)."""

from __future__ import annotations

from axion.cli.app import stage3_app


@stage3_app.command()
def prepare() -> None:
    """Write training tiles from real data (under construction)."""
    raise SystemExit("prepare is not available yet")
