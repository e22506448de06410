"""ketaflow: an open-source platform for ketamine-assisted therapy programs."""

__version__ = "0.1.0"
