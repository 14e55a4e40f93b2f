"""Email rendering: plain data in, strings out; no Flask, no database."""

from app.emails.content import EmailContent, Identity, Problem, Recipient
from app.emails.render import (
    ContentError,
    Placeholder,
    RenderedEmail,
    Skeleton,
    build_skeleton,
    check_content,
    extract_links,
)
from app.emails.sandbox import check_template

__all__ = [
    "ContentError",
    "EmailContent",
    "Identity",
    "Placeholder",
    "Problem",
    "Recipient",
    "RenderedEmail",
    "Skeleton",
    "build_skeleton",
    "check_content",
    "check_template",
    "extract_links",
]
