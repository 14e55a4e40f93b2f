"""Member CSV import, database-free part: streaming, header mapping, validation.

Typical use::

    with open(path, "rb") as stream:
        encoding = choose_encoding(stream)  # reads the whole file, in C
        stream.seek(0)
        member_csv = open_member_csv(stream, encoding)  # may raise CsvRefused
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
from .reader import (
    LEFT_OUT,
    MAX_FIELD_LENGTH,
    UTF_8,
    WINDOWS_1252,
    MemberCsv,
    ParsedRow,
    SkippedRow,
    choose_encoding,
    open_member_csv,
)

__all__ = [
    "LEFT_OUT",
    "MAX_FIELD_LENGTH",
    "STANDARD_FIELDS",
    "UTF_8",
    "WINDOWS_1252",
    "ColumnMapping",
    "CsvRefused",
    "InvalidEmail",
    "MemberCsv",
    "ParsedRow",
    "SkippedRow",
    "choose_encoding",
    "map_columns",
    "normalise_email",
    "normalise_language",
    "normalise_postal_code",
    "open_member_csv",
]
