"""Header mapping and per-field normalisers for member CSV files."""

import re
import unicodedata
from dataclasses import dataclass

__all__ = [
    "STANDARD_FIELDS",
    "ColumnMapping",
    "CsvRefused",
    "map_columns",
    "normalise_language",
    "normalise_postal_code",
]

STANDARD_FIELDS = ("email", "first_name", "last_name", "language", "postal_code", "local")

# Keys are header texts after _header_key(): lower case, NFC, "_" and "-"
# read as spaces, runs of spaces collapsed. French spellings come with and
# without accents because both turn up in spreadsheets typed in Quebec.
_ALIASES = {
    "email": "email",
    "e mail": "email",
    "email address": "email",
    "e mail address": "email",
    "courriel": "email",
    "adresse courriel": "email",
    "adresse de courriel": "email",
    "first name": "first_name",
    "firstname": "first_name",
    "given name": "first_name",
    "prénom": "first_name",
    "prenom": "first_name",
    "last name": "last_name",
    "lastname": "last_name",
    "surname": "last_name",
    "family name": "last_name",
    "nom de famille": "last_name",
    # Beside "Prénom", a bare "Nom" is the family name in French lists.
    "nom": "last_name",
    "language": "language",
    "lang": "language",
    "langue": "language",
    "preferred language": "language",
    "langue préférée": "language",
    "langue preferee": "language",
    "postal code": "postal_code",
    "postalcode": "postal_code",
    "postcode": "postal_code",
    "zip": "postal_code",
    "zip code": "postal_code",
    "code postal": "postal_code",
    "local": "local",
    "chapter": "local",
    "local number": "local",
    "section locale": "local",
}

_SPACES = re.compile(r"[\s_\-]+")


class CsvRefused(Exception):
    """The file as a whole cannot be imported; the message is for the organizer."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


@dataclass(frozen=True, slots=True)
class ColumnMapping:
    """Where each field lives in the file, decided from the header line.

    Attributes:
        headers: Every header cell, trimmed, in file order.
        standard: Standard field name -> 0-based column index, for the
            standard fields the file has (``email`` is always there).
        attributes: (key, 0-based column index) of every custom column; the
            key is the header text as written, trimmed.
        ignored: 0-based indexes of columns with an empty header; their
            values are not imported.
    """

    headers: tuple[str, ...]
    standard: dict[str, int]
    attributes: tuple[tuple[str, int], ...]
    ignored: tuple[int, ...]

    def header_of(self, field: str) -> str:
        """Return the header text, as written in the file, of a standard field."""
        return self.headers[self.standard[field]]


_INVISIBLE = re.compile("[\ufeff\u200b-\u200d\u2060]")


def _header_key(text: str) -> str:
    # NFC because a Mac can write "é" as "e" + combining accent. Invisible
    # characters come with a second BOM (files joined end to end) or a
    # header copied from a web page.
    text = _INVISIBLE.sub("", unicodedata.normalize("NFC", text))
    return _SPACES.sub(" ", text.lower()).strip()


def _quote_list(names: list[str]) -> str:
    return ", ".join(names) if names else "(none)"


def map_columns(header: list[str]) -> ColumnMapping:
    """Map header cells to standard fields and custom attributes.

    Matching is case-, space- and accent-form-insensitive and knows common
    English and French aliases ("E-mail", "Courriel", "Prénom", "Zip"...).

    Args:
        header: The cells of the header line, as parsed.

    Returns:
        The mapping.

    Raises:
        CsvRefused: No header, no email column, or two columns for one
            field or one attribute key.
    """
    headers = tuple(cell.strip() for cell in header)
    if not any(headers):
        raise CsvRefused(
            "The file has no header line: its first line must name the columns "
            "(for example email, first_name, last_name)."
        )
    standard: dict[str, int] = {}
    attributes: list[tuple[str, int]] = []
    attribute_columns: dict[str, int] = {}
    ignored: list[int] = []
    for index, text in enumerate(headers):
        if not text:
            ignored.append(index)
            continue
        key = _header_key(text)
        field = _ALIASES.get(key)
        if field is not None:
            if field in standard:
                first = headers[standard[field]]
                raise CsvRefused(
                    f"The file has two columns for {field}: '{first}' (column "
                    f"{standard[field] + 1}) and '{text}' (column {index + 1}). "
                    "Remove or rename one of them."
                )
            standard[field] = index
            continue
        if key in attribute_columns:
            first = headers[attribute_columns[key]]
            raise CsvRefused(
                f"The file has two columns named '{text}' (columns "
                f"{attribute_columns[key] + 1} and {index + 1}"
                + (f", the first written '{first}'" if first != text else "")
                + "). Remove or rename one of them."
            )
        attribute_columns[key] = index
        attributes.append((text, index))
    if "email" not in standard:
        found = _quote_list([text for text in headers if text])
        if any("@" in text for text in headers):
            raise CsvRefused(
                "The first line of the file looks like a member, not column names "
                f"({found}). Add a header line naming the columns, with one called 'email'."
            )
        raise CsvRefused(f"The file has no 'email' column. Columns found: {found}.")
    return ColumnMapping(headers, standard, tuple(attributes), tuple(ignored))


_LANGUAGES = {
    "en": "en",
    "eng": "en",
    "english": "en",
    "anglais": "en",
    "fr": "fr",
    "fra": "fr",
    "fre": "fr",
    "french": "fr",
    "français": "fr",
    "francais": "fr",
}
# The first word of "EN-CA", "fr_CA", "English (Canada)", "français canadien".
_FIRST_WORD = re.compile(r"[^\s_\-(]+")


def normalise_language(raw: str) -> str | None:
    """Read a preferred-language cell as 'en' or 'fr'.

    Args:
        raw: The trimmed, non-empty cell text.

    Returns:
        'en' or 'fr', or None when the language is not one Rallypoint sends in.
    """
    key = unicodedata.normalize("NFC", raw).lower()
    language = _LANGUAGES.get(key)
    if language is None:
        word = _FIRST_WORD.match(key)
        language = _LANGUAGES.get(word.group()) if word else None
    return language


# Letters Canada Post uses: never D, F, I, O, Q, U; W and Z only after the first.
_POSTAL_CODE = re.compile(
    r"[ABCEGHJ-NPRSTVXY][0-9][ABCEGHJ-NPRSTV-Z][\s\-]*[0-9][ABCEGHJ-NPRSTV-Z][0-9]"
)


def normalise_postal_code(raw: str) -> str:
    """Write a Canadian postal code as "A1A 1A1"; leave anything else as it is.

    Args:
        raw: The trimmed, non-empty cell text.

    Returns:
        The canonical Canadian form, or ``raw`` unchanged when it is not a
        Canadian postal code (a US ZIP code, a typo), so no data is lost.
    """
    upper = raw.upper()
    if _POSTAL_CODE.fullmatch(upper) is None:
        return raw
    return upper[:3] + " " + upper[-3:]
