"""The command line: doctor and demo (the backfill's commands live in _backfill)."""
