"""Streaming member CSV reader: refuses non-CSV files, yields parsed and skipped rows."""

import codecs
import csv
import io
import re
from collections.abc import Callable, Iterator
from functools import partial
from itertools import chain, islice
from operator import itemgetter
from typing import TYPE_CHECKING, BinaryIO, NamedTuple

from .addresses import InvalidEmail, _fast_normalise, normalise_email
from .columns import (
    ColumnMapping,
    CsvRefused,
    map_columns,
    normalise_language,
    normalise_postal_code,
)

if TYPE_CHECKING:
    from _csv import Reader as CsvReader

    from _typeshed import WriteableBuffer

__all__ = [
    "LEFT_OUT",
    "MAX_FIELD_LENGTH",
    "UTF_8",
    "WINDOWS_1252",
    "MemberCsv",
    "ParsedRow",
    "SkippedRow",
    "choose_encoding",
    "open_member_csv",
]

MAX_FIELD_LENGTH = 1000
UTF_8 = "utf-8"
# Excel's "CSV (Comma delimited)" on Windows writes this; Python calls it cp1252.
WINDOWS_1252 = "windows-1252"
# The encoding pre-scan reads this much at a time: large enough that its per-block Python
# is nothing next to the C calls over the block, small enough that memory stays flat.
_SCAN_BLOCK = 1024 * 1024
# The five byte values Windows-1252 leaves undefined: a file holding one is not Windows-1252.
_UNDEFINED_IN_WINDOWS_1252 = (b"\x81", b"\x8d", b"\x8f", b"\x90", b"\x9d")
# Sniffing window: binary content shows within it, and a header line must fit in it.
_HEAD_BYTES = 64 * 1024
# Longest physical line kept. A longer one (no newline for a megabyte: a
# corrupt or hostile file) is dropped piece by piece instead of being held
# in memory, and reported as a skipped row.
_MAX_LINE = 1024 * 1024
_LINES_PER_BATCH = 512
_SHOWN_EMAIL_LENGTH = 100
# The standard fields after the email, in ParsedRow's order.
_OPTIONAL_FIELDS = ("first_name", "last_name", "language", "postal_code", "local")
# Lone surrogates are what surrogateescape makes of bytes that are not UTF-8.
_SURROGATE = re.compile("[\udc80-\udcff]")
_UNSHOWABLE = re.compile("[\x00\udc80-\udcff]")
_SPREADSHEET_HINT = ' If it is a spreadsheet, save it as "CSV UTF-8" and import that file.'
_BINARY_MESSAGE = "This file is not a CSV file (it contains binary data)." + _SPREADSHEET_HINT
# Control characters other than tab, newline, carriage return and form feed
# never appear in text a spreadsheet writes; many of them mean binary data.
_BINARY_CHARS = re.compile("[\x00-\x08\x0b\x0e-\x1f\x7f\udc80-\udcff]")


class ParsedRow(NamedTuple):
    """A valid member row, normalised.

    None in a field means "not given" (no such column, or an empty cell), so
    the import keeps what it already has, or the default, for that field.

    Attributes:
        line: The physical line where the record starts.
        email: The normalised address (see normalise_email).
        first_name: Trimmed, or None.
        last_name: Trimmed, or None.
        language: "en" or "fr", or None.
        postal_code: "A1A 1A1" for a Canadian postal code, else trimmed as
            written; or None.
        local: The local or chapter, trimmed, or None.
        attributes: The custom columns with a non-empty value, keyed by
            their header text.
        warnings: Values left out of an otherwise good row (an unknown
            language, a field too long or not valid UTF-8), each naming its
            field: the member is imported without them.
    """

    line: int
    email: str
    first_name: str | None
    last_name: str | None
    language: str | None
    postal_code: str | None
    local: str | None
    attributes: dict[str, str]
    warnings: tuple[str, ...] = ()


# Only a bad or missing address (or a row whose columns cannot be trusted) skips a row; a bad
# optional value is left out, and the row imported with a warning that ends with this.
LEFT_OUT = ": imported without it"


def _leave_out(
    fields: list[str], indexes: list[int], headers: tuple[str, ...], problem: str
) -> tuple[str, ...]:
    """Empty the cells at `indexes` (so the member keeps what it has, or the default) and
    say so, one warning per field."""
    for index in indexes:
        fields[index] = ""
    return tuple(f"field '{headers[index]}' {problem}{LEFT_OUT}" for index in indexes)


class SkippedRow(NamedTuple):
    """A row that is not imported, with the reason to show the organizer.

    Attributes:
        line: The physical line where the record starts.
        reason: Why it is skipped, in words an organizer can act on.
        email: The address as written (at most 100 characters), when the row
            has one, so the organizer can find the member.
    """

    line: int
    reason: str
    email: str | None = None


class _PrefixedStream(io.RawIOBase):
    """The bytes already read for sniffing, then the rest of the caller's stream.

    This lets the sniffing work on non-seekable streams (an HTTP request body)
    without reading more than the sniffing window ahead. Closing it does not
    close the caller's stream: the caller opened it and closes it.
    """

    def __init__(self, head: bytes, rest: BinaryIO) -> None:
        super().__init__()
        self._head = memoryview(head)
        self._rest = rest

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: "WriteableBuffer", /) -> int:
        target = memoryview(buffer).cast("B")
        if self._head:
            size = min(len(target), len(self._head))
            target[:size] = self._head[:size]
            self._head = self._head[size:]
            return size
        data = self._rest.read(len(target))
        target[: len(data)] = data
        return len(data)


class _LineSource:
    """Physical lines of the text, in batches, with over-long lines cut out.

    Reading a batch of lines with C-level calls and checking their lengths at
    once costs a few nanoseconds a line; a Python generator per line would
    cost ten times that. Each over-long line is replaced by an empty line, so
    csv.reader's line count stays the physical one, and its number is noted
    in ``overlong`` for the row loop to report.
    """

    def __init__(self, text: io.TextIOWrapper) -> None:
        self._read = iter(partial(text.readline, _MAX_LINE), "")
        self._lines = 0
        self.overlong: list[int] = []

    def __iter__(self) -> Iterator[str]:
        return chain.from_iterable(self._batches())

    def _batches(self) -> Iterator[list[str]]:
        read = self._read
        while batch := list(islice(read, _LINES_PER_BATCH)):
            if max(map(len, batch)) >= _MAX_LINE:
                batch = self._drop_overlong(batch)
            self._lines += len(batch)
            yield batch

    def _drop_overlong(self, batch: list[str]) -> list[str]:
        kept: list[str] = []
        pieces = iter(batch)
        for piece in pieces:
            if len(piece) < _MAX_LINE or piece[-1] in "\r\n":
                kept.append(piece)
                continue
            kept.append("\n")
            self.overlong.append(self._lines + len(kept))
            # Skip the rest of this physical line, in the batch or beyond it.
            for rest in chain(pieces, self._read):
                if len(rest) < _MAX_LINE or rest[-1] in "\r\n":
                    break
        return kept


def _read_head(stream: BinaryIO) -> bytes:
    chunks: list[bytes] = []
    size = 0
    while size < _HEAD_BYTES:
        chunk = stream.read(_HEAD_BYTES - size)
        if not chunk:
            break
        chunks.append(chunk)
        size += len(chunk)
    return b"".join(chunks)


def choose_encoding(stream: BinaryIO) -> str:
    """Decide how a member file is to be read: UTF_8, or WINDOWS_1252 for Excel's legacy CSV.

    WINDOWS_1252 only when the file has no valid non-ASCII UTF-8 sequence at all, at least
    one byte sequence that is not UTF-8, and no byte that Windows-1252 leaves undefined.
    Everything else is UTF_8, as it always was: a file that mixes UTF-8 accents with bad
    bytes is corrupt, not Windows-1252, and its bad rows are skipped one by one.

    The whole file must be seen (the first accent may be on line 80,000), so this reads the
    stream to its end, a block at a time (flat memory), in C calls only: an ASCII block is
    one isascii(), any other one a UTF-8 decode that drops invalid bytes, and a valid
    non-ASCII character in what is left ends the scan. Most UTF-8 files with accents are
    therefore decided in their first block. The caller rewinds the stream.
    """
    # 'ignore' drops what is not UTF-8: whatever non-ASCII survives was valid UTF-8. The
    # incremental decoder carries a sequence cut by a block's edge over to the next block.
    decoder = codecs.getincrementaldecoder("utf-8")("ignore")
    invalid = False
    while block := stream.read(_SCAN_BLOCK):
        if block.isascii() and not decoder.getstate()[0]:
            continue
        if any(byte in block for byte in _UNDEFINED_IN_WINDOWS_1252):
            return UTF_8
        pending = len(decoder.getstate()[0])
        text = decoder.decode(block)
        if not text.isascii():
            return UTF_8
        # Every character left is one ASCII byte: the bytes taken in and not given back
        # (less those still pending) were invalid.
        invalid = invalid or pending + len(block) - len(decoder.getstate()[0]) > len(text)
    # A sequence cut short by the end of the file is not UTF-8 either.
    invalid = invalid or bool(decoder.getstate()[0])
    return WINDOWS_1252 if invalid else UTF_8


def _refuse_binary(head: bytes, complete: bool, encoding: str) -> None:
    if head.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        raise CsvRefused("This file is UTF-16 text, not UTF-8." + _SPREADSHEET_HINT)
    if b"\x00" in head:
        raise CsvRefused(_BINARY_MESSAGE)
    if encoding == WINDOWS_1252:
        # Its high bytes are letters (é, ç, “), not binary data; control characters still are.
        text = head.decode("cp1252", "surrogateescape")
    else:
        # final=complete: a character cut by the window's edge is not an error.
        text = codecs.getincrementaldecoder("utf-8")("surrogateescape").decode(head, final=complete)
    # A little undecodable text is a row-level problem (a legacy-encoded name);
    # a lot of it, or of control characters, is not a text file at all.
    if len(_BINARY_CHARS.findall(text)) > len(text) // 4:
        raise CsvRefused(_BINARY_MESSAGE)


def _no_header(line: int) -> str:
    return (
        f"No header line was found: line {line} is longer than {_MAX_LINE:,} characters, "
        "and nothing after it is a line. Is this a CSV file with one member per line?"
    )


def _choose_delimiter(line: str) -> str:
    # Count only outside quotes; split('"') alternates outside and inside
    # quoted text, and a doubled quote toggles twice, so it stays correct.
    outside = "".join(line.split('"')[::2])
    return ";" if outside.count(";") > outside.count(",") else ","


def _shown(email: str) -> str:
    # Skip reports end up in JSON, CSV downloads and PostgreSQL: no lone
    # surrogates (unencodable) and no NUL (refused by PostgreSQL text) there.
    email = _UNSHOWABLE.sub("\ufffd", email)
    if len(email) > _SHOWN_EMAIL_LENGTH:
        return email[:_SHOWN_EMAIL_LENGTH] + "…"
    return email


def open_member_csv(stream: BinaryIO, encoding: str = UTF_8) -> "MemberCsv":
    """Open a member CSV file for streaming: check it, read its header.

    Reads at most 64 KiB ahead before deciding whether the file is a CSV at
    all; rows are read only as the result is iterated, so memory stays flat
    whatever the size of the file. The stream is not closed.

    Args:
        stream: The file, opened in binary mode; it need not be seekable.
        encoding: UTF_8 (with or without a BOM; a row with bytes that are not
            UTF-8 is skipped), or WINDOWS_1252 when choose_encoding said so
            for the whole file.

    Returns:
        The opened file, ready to iterate once.

    Raises:
        CsvRefused: The file is binary, UTF-16, empty, has no header line,
            no email column, or two columns for one field; nothing has been
            read as a member.
    """
    if encoding not in (UTF_8, WINDOWS_1252):
        raise ValueError(f"unsupported member file encoding: {encoding!r}")
    head = _read_head(stream)
    _refuse_binary(head, complete=len(head) < _HEAD_BYTES, encoding=encoding)
    text = io.TextIOWrapper(
        io.BufferedReader(_PrefixedStream(head, stream), _HEAD_BYTES),
        # utf-8-sig takes the BOM off if there is one; a Windows-1252 file has none (its
        # bytes would be valid UTF-8).
        encoding="utf-8-sig" if encoding == UTF_8 else "cp1252",
        errors="surrogateescape",  # a bad byte spoils its row, not the file
        newline="",  # csv sees "\r\n" inside quoted fields as written
    )
    text._CHUNK_SIZE = _HEAD_BYTES  # type: ignore[attr-defined]  # fewer, larger decodes
    source = _LineSource(text)
    lines = iter(source)
    # Blank lines before the header are tolerated, and still counted.
    leading: list[str] = []
    for line in lines:
        leading.append(line)
        if line.strip():
            break
    else:
        if source.overlong:
            # Over-long lines stand in as blank ones; saying "empty" would hide the reason.
            raise CsvRefused(_no_header(source.overlong[0]))
        raise CsvRefused("The file is empty.")
    header_text = leading[-1]
    if (source.overlong and source.overlong[0] <= len(leading)) or len(header_text) > _HEAD_BYTES:
        raise CsvRefused("This file is not a CSV file (its first line is far too long).")
    delimiter = _choose_delimiter(header_text)
    reader = csv.reader(chain(leading, lines), delimiter=delimiter, skipinitialspace=True)
    for _ in range(len(leading) - 1):
        next(reader)
    try:
        header = next(reader)
    except csv.Error as exc:  # e.g. an unclosed quote running past the field size limit
        raise CsvRefused(f"The header line of the file is not valid CSV ({exc}).") from None
    if _SURROGATE.search("".join(header)):
        raise CsvRefused(
            "This file is not UTF-8 text (its first line has characters in another "
            'encoding). Save it as "CSV UTF-8" and import it again.'
        )
    return MemberCsv(map_columns(header), delimiter, len(leading), reader, source, encoding)


class MemberCsv:
    """An opened member CSV file: its columns, then its rows, once.

    Iterating yields a ParsedRow for each valid row and a SkippedRow for each
    row that is not imported, in file order, each with the physical line
    where its record starts (the header is usually line 1; a quoted field
    spanning lines counts all of them). Blank lines, and rows of empty cells,
    are neither.

    Duplicates within the file are not detected here: that would mean
    remembering every address, and memory must stay flat whatever the size
    of the file. The database staging step decides them, using the line
    numbers these rows carry.

    Attributes:
        columns: Which column holds which field, and the custom attributes.
        delimiter: "," or ";", decided from the header line.
        header_line: The line number of the header (1 unless blank lines
            precede it).
        encoding: How the file is read: UTF_8 or WINDOWS_1252.
    """

    def __init__(
        self,
        columns: ColumnMapping,
        delimiter: str,
        header_line: int,
        reader: "CsvReader",
        source: _LineSource,
        encoding: str = UTF_8,
    ) -> None:
        self.columns = columns
        self.delimiter = delimiter
        self.header_line = header_line
        self.encoding = encoding
        self._reader = reader
        self._source = source
        self._started = False

    def __iter__(self) -> Iterator[ParsedRow | SkippedRow]:
        if self._started:
            raise RuntimeError("A member CSV file can be iterated only once.")
        self._started = True
        return self._rows()

    def _rows(self) -> Iterator[ParsedRow | SkippedRow]:
        """The file's records, each with the line it starts on, parsed by _row_parser.

        A record that is not valid CSV is skipped and reading goes on after it; a line the
        line source dropped for its length, and a record with too many fields, are skipped
        here. A blank line yields nothing.
        """
        reader = self._reader
        parse = self._row_parser()
        width = len(self.columns.headers)
        email_at = self.columns.standard["email"]
        padding = [""] * (width + 1)
        overlong = self._source.overlong
        previous_end = reader.line_num
        while True:
            try:
                for fields in reader:
                    line = previous_end + 1
                    previous_end = reader.line_num
                    if overlong and overlong[0] <= previous_end:
                        yield _overlong_row(line, previous_end, overlong)
                        continue
                    count = len(fields)
                    if count == width:
                        fields.append("")
                    elif count == 0:
                        continue  # a blank line
                    elif count < width:
                        fields.extend(padding[count:])
                    elif (refused := self._extra_fields(fields, line, email_at)) is not None:
                        yield refused
                        continue
                    if (row := parse(line, fields)) is not None:
                        yield row
            except csv.Error as exc:
                line = previous_end + 1
                previous_end = reader.line_num
                yield SkippedRow(line, f"malformed CSV: {exc}")
                continue
            return

    def _row_parser(self) -> Callable[[int, list[str]], ParsedRow | SkippedRow | None]:
        """A function from one record (padded to width + 1) to its row, or None for a row of
        empty cells. A closure over this file's columns: it runs a million times a file, so
        it reads local names only and leaves every rare case (a refusal, an address for
        email-validator, a new spelling of a language) to a function of its own."""
        email_at = self.columns.standard["email"]
        standard_fields = self._standard_fields()
        attributes = self.columns.attributes
        languages: dict[str, str | None] = {}  # the few spellings of a language in one file
        fast_normalise = _fast_normalise
        bad_text = self._bad_text
        # NamedTuple's generated __new__ is a Python function; building the
        # tuple directly skips it and saves a tenth of the time per row.
        new_row = tuple.__new__
        join = "".join

        def parse(line: int, fields: list[str]) -> ParsedRow | SkippedRow | None:
            joined = join(fields)
            warnings: tuple[str, ...] = ()
            if not joined.isascii() or "\x00" in joined or len(joined) > MAX_FIELD_LENGTH:
                checked = bad_text(fields, joined, line, email_at)
                if isinstance(checked, SkippedRow):
                    return checked
                warnings = checked
            raw_email, first, last, raw_language, postal, local = standard_fields(fields)
            if not (raw_email := raw_email.strip()):
                # A row of empty cells is a blank line.
                return SkippedRow(line, "missing email") if joined.strip() else None
            # The fast path directly: nearly every row ends here.
            email = fast_normalise(raw_email) or _slow_email(line, raw_email)
            if type(email) is SkippedRow:
                return email
            language = None
            if raw_language := raw_language.strip():
                language = languages.get(raw_language, "")
                if language == "":
                    language = _learn_language(languages, raw_language)
                if language is None:
                    warnings += (
                        f"unknown language '{raw_language[:40]}' (use en or fr)"
                        f"{LEFT_OUT} (new members get English)",
                    )
            postal = postal.strip()
            return new_row(
                ParsedRow,
                (
                    line,
                    email,
                    first.strip() or None,
                    last.strip() or None,
                    language,
                    normalise_postal_code(postal) if postal else None,
                    local.strip() or None,
                    {key: value for key, i in attributes if (value := fields[i].strip())},
                    warnings,
                ),
            )

        return parse

    def _standard_fields(self) -> Callable[[list[str]], tuple[str, ...]]:
        """The row's email, first name, last name, language, postal code and local, in C.

        Absent standard fields read index `width`, a cell that is always empty (every row
        is padded to width + 1), so the row loop has no branch per optional column.
        """
        width = len(self.columns.headers)
        standard = self.columns.standard
        return itemgetter(
            standard["email"],
            *(standard.get(name, width) for name in _OPTIONAL_FIELDS),
        )

    def _extra_fields(self, fields: list[str], line: int, email_at: int) -> SkippedRow | None:
        """A row with more fields than the header: refused, unless the extra ones are empty
        (a trailing delimiter), which are dropped. Leaves `fields` padded to width + 1."""
        width, count = len(self.columns.headers), len(fields)
        if any(extra.strip() for extra in fields[width:]):
            return SkippedRow(
                line,
                f"wrong number of fields (expected {width}, found {count})",
                _shown(fields[email_at].strip()),
            )
        del fields[width + 1 :]
        fields[width] = ""
        return None

    def _bad_text(
        self, fields: list[str], joined: str, line: int, email_at: int
    ) -> SkippedRow | tuple[str, ...]:
        """Bytes that are not UTF-8, a NUL, or a field longer than MAX_FIELD_LENGTH: in the
        address the row is skipped; in another imported field the value is left out (its
        cell emptied) and the row keeps a warning naming it. Accents alone pass."""
        columns = self.columns
        headers = columns.headers
        imported = sorted([*columns.standard.values(), *(i for _, i in columns.attributes)])
        warnings: tuple[str, ...] = ()
        if not joined.isascii() and _SURROGATE.search(joined):
            if _SURROGATE.search(fields[email_at]):
                return SkippedRow(line, "not valid UTF-8", _shown(fields[email_at].strip()))
            bad = [i for i in imported if _SURROGATE.search(fields[i])]
            warnings += _leave_out(fields, bad, headers, "is not valid UTF-8")
        if "\x00" in joined:
            # PostgreSQL text cannot hold NUL, and no spreadsheet writes it.
            if "\x00" in fields[email_at]:
                return SkippedRow(
                    line, "contains a NUL character", _shown(fields[email_at].strip())
                )
            bad = [i for i in imported if "\x00" in fields[i]]
            warnings += _leave_out(fields, bad, headers, "contains a NUL character")
        if len(joined) > MAX_FIELD_LENGTH:
            if len(fields[email_at].strip()) > MAX_FIELD_LENGTH:
                return SkippedRow(
                    line,
                    f"field '{headers[email_at]}' is longer than {MAX_FIELD_LENGTH} characters",
                )
            bad = [i for i in imported if len(fields[i].strip()) > MAX_FIELD_LENGTH]
            warnings += _leave_out(
                fields, bad, headers, f"is longer than {MAX_FIELD_LENGTH} characters"
            )
        return warnings


def _overlong_row(line: int, previous_end: int, overlong: list[int]) -> SkippedRow:
    """The row of a physical line the line source dropped for its length (_MAX_LINE)."""
    first_overlong = overlong[0]
    while overlong and overlong[0] <= previous_end:
        overlong.pop(0)
    return SkippedRow(line, f"line {first_overlong} is longer than {_MAX_LINE} characters")


def _slow_email(line: int, raw_email: str) -> str | SkippedRow:
    """An address the fast path left to email-validator: its normalised form, or the skip."""
    try:
        return normalise_email(raw_email)
    except InvalidEmail as exc:
        return SkippedRow(line, f"invalid email address: {exc}", _shown(raw_email))


def _learn_language(languages: dict[str, str | None], raw_language: str) -> str | None:
    language = normalise_language(raw_language)
    if len(languages) < 256:
        languages[raw_language] = language
    return language
