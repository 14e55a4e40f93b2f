"""Member CSV import, database-free part: streaming, header mapping, validation."""

from .addresses import InvalidEmail, normalise_email

__all__ = ["InvalidEmail", "normalise_email"]
