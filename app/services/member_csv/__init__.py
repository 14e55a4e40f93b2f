"""Member CSV import, database-free part: streaming, header mapping, validation.

Typical use::

    with open(path, "rb") as stream:
        member_csv = open_member_csv(stream)  # may raise CsvRefused
        for row in member_csv:
            if isinstance(row, ParsedRow):
                ...  # stage it
            else:
                ...  # report row.line, row.reason

Duplicate addresses within a file are not decided here, so that memory stays
flat; the database staging step does it.
"""

from .addresses import InvalidEmail, normalise_email
from .columns import (
    STANDARD_FIELDS,
    ColumnMapping,
    CsvRefused,
    map_columns,
    normalise_language,
    normalise_postal_code,
)
from .reader import MAX_FIELD_LENGTH, MemberCsv, ParsedRow, SkippedRow, open_member_csv

__all__ = [
    "MAX_FIELD_LENGTH",
    "STANDARD_FIELDS",
    "ColumnMapping",
    "CsvRefused",
    "InvalidEmail",
    "MemberCsv",
    "ParsedRow",
    "SkippedRow",
    "map_columns",
    "normalise_email",
    "normalise_language",
    "normalise_postal_code",
    "open_member_csv",
]
