"""Task modules, one per room of work; importing this registers them all."""

from workers.tasks import maintenance, sending, tracking, transactional, webhooks  # noqa: F401
