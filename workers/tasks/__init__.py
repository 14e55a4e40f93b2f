"""Task modules, one per room of work; importing this registers them all."""

from workers.tasks import audience, maintenance, transactional  # noqa: F401
