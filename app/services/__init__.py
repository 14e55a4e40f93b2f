"""Domain services: the only code that changes models."""
