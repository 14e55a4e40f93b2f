"""Task modules, one per room of work; importing this registers them all."""

from workers.tasks import (  # noqa: F401
    audience,
    maintenance,
    sending,
    tracking,
    transactional,
    webhooks,
)
