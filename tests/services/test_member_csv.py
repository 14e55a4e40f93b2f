"""Member CSV parsing: refusals, header mapping, row validation and line numbers."""

import io

import pytest

from app.services.audience.member_csv import (
    MAX_FIELD_LENGTH,
    UTF_8,
    WINDOWS_1252,
    CsvRefused,
    MemberCsv,
    ParsedRow,
    SkippedRow,
    choose_encoding,
    open_member_csv,
)
from tests.support.member_files import (
    HOSTILE_CSV,
    NOT_CSV,
    UTF16,
    WINDOWS_1252_CSV,
    WINDOWS_1252_MEMBERS,
)

BOM = b"\xef\xbb\xbf"


def as_bytes(content: str | bytes) -> bytes:
    return content.encode() if isinstance(content, str) else content


def open_csv(content: str | bytes) -> MemberCsv:
    return open_member_csv(io.BytesIO(as_bytes(content)))


def read(content: str | bytes) -> list[ParsedRow | SkippedRow]:
    return list(open_csv(content))


def parsed(content: str | bytes) -> list[ParsedRow]:
    rows = read(content)
    assert all(isinstance(row, ParsedRow) for row in rows), rows
    return rows  # type: ignore[return-value]


def skips(content: str | bytes) -> list[tuple[int, str]]:
    return [(row.line, row.reason) for row in read(content) if isinstance(row, SkippedRow)]


def refusal(content: str | bytes) -> str:
    with pytest.raises(CsvRefused) as refused:
        open_csv(content)
    return refused.value.message


def member(line: int, email: str, **fields: object) -> ParsedRow:
    values: dict[str, object] = {
        "first_name": None,
        "last_name": None,
        "language": None,
        "postal_code": None,
        "local": None,
        "attributes": {},
    }
    values.update(fields)
    return ParsedRow(line, email, **values)  # type: ignore[arg-type]


# Encoding and delimiters


@pytest.mark.parametrize("prefix", [b"", BOM], ids=["no-bom", "bom"])
@pytest.mark.parametrize("newline", ["\n", "\r\n", "\r"], ids=["lf", "crlf", "cr"])
def test_utf8_with_or_without_bom_and_any_line_ending(prefix: bytes, newline: str) -> None:
    text = newline.join(["email,first_name", "ana@x.ca,Ana", "zoé@x.ca,Zoé", ""])
    member_csv = open_csv(prefix + text.encode())
    assert member_csv.columns.headers == ("email", "first_name")
    assert list(member_csv) == [
        member(2, "ana@x.ca", first_name="Ana"),
        member(3, "zoé@x.ca", first_name="Zoé"),
    ]


def test_semicolon_delimiter_is_detected_from_the_header() -> None:
    member_csv = open_csv("Courriel;Nom;Lieu de travail\nana@x.ca;Roy;Hôpital, Montréal\n")
    assert member_csv.delimiter == ";"
    assert list(member_csv) == [
        member(2, "ana@x.ca", last_name="Roy", attributes={"Lieu de travail": "Hôpital, Montréal"})
    ]


def test_comma_delimiter_with_semicolons_inside_quoted_headers() -> None:
    member_csv = open_csv('email,"notes; misc",name\nana@x.ca,a;b,Ana\n')
    assert member_csv.delimiter == ","
    (row,) = member_csv
    assert row == member(2, "ana@x.ca", attributes={"notes; misc": "a;b", "name": "Ana"})


def test_single_column_file() -> None:
    assert parsed("email\nana@x.ca\nbob@x.ca\n") == [member(2, "ana@x.ca"), member(3, "bob@x.ca")]


# Line numbers, quoting, blank lines


def test_quoted_fields_spanning_lines_count_their_lines() -> None:
    content = (
        "email,first_name,notes\n"
        'ana@x.ca,Ana,"line one\nline two\nline three"\n'
        'bob@x.ca,"Bob ""The Builder""",\n'
        'carl@x.ca,Carl,"a\r\nb"\n'
        "not-an-email,Dan,\n"
    )
    rows = read(content)
    assert [row.line for row in rows] == [2, 5, 6, 8]
    assert rows[0].attributes == {"notes": "line one\nline two\nline three"}  # type: ignore[union-attr]
    assert rows[1].first_name == 'Bob "The Builder"'  # type: ignore[union-attr]
    assert rows[2].attributes == {"notes": "a\r\nb"}  # type: ignore[union-attr]
    assert isinstance(rows[3], SkippedRow)


def test_blank_lines_are_neither_rows_nor_errors() -> None:
    content = "\n\nemail,first_name\n\nana@x.ca,Ana\n   \n,\n , \n\r\n\nbob@x.ca,Bob\n\n"
    member_csv = open_csv(content)
    assert member_csv.header_line == 3
    assert list(member_csv) == [
        member(5, "ana@x.ca", first_name="Ana"),
        member(11, "bob@x.ca", first_name="Bob"),
    ]


def test_fields_are_trimmed() -> None:
    content = 'email,first_name,last_name,local\n  ana@x.ca ,  Ana ,"  Roy  ",\tLocal 3 \n'
    assert parsed(content) == [
        member(2, "ana@x.ca", first_name="Ana", last_name="Roy", local="Local 3")
    ]


def test_space_after_delimiter_before_quote() -> None:
    assert parsed('email, last_name\nana@x.ca, "Roy, Jr."\n')[0].last_name == "Roy, Jr."


# Encoding errors


def test_bad_utf8_spoils_only_its_row() -> None:
    content = b"email,first_name\nana@x.ca,Ana\nren\xe9@x.ca,Ren\xe9\nbob@x.ca,B\xc3\xa9a\n"
    rows = read(content)
    assert rows == [
        member(2, "ana@x.ca", first_name="Ana"),
        SkippedRow(3, "not valid UTF-8", "ren\ufffd@x.ca"),
        member(4, "bob@x.ca", first_name="Béa"),
    ]


def test_bad_utf8_in_an_optional_column_leaves_that_value_out() -> None:
    assert read(b"email,notes,first_name\nana@x.ca,caf\xe9,Ana\n") == [
        member(
            2,
            "ana@x.ca",
            first_name="Ana",
            warnings=("field 'notes' is not valid UTF-8: imported without it",),
        )
    ]


def test_nul_character_after_the_sniffing_window_leaves_its_value_out() -> None:
    filler = "".join(f"m{i}@x.ca,Name\n" for i in range(8000))  # well past 64 KiB
    content = "email,first_name\n" + filler + "nul@x.ca,A\x00B\n" + "n\x00l@x.ca,A\n"
    rows = read(content)
    assert len(rows) == 8002
    assert rows[-2] == member(
        8002,
        "nul@x.ca",
        warnings=("field 'first_name' contains a NUL character: imported without it",),
    )
    assert rows[-1] == SkippedRow(8003, "contains a NUL character", "n\ufffdl@x.ca")


def test_header_in_another_encoding_is_refused() -> None:
    message = refusal("Courriel;Prénom\nana@x.ca;Zoé\n".encode("cp1252"))
    assert "not UTF-8" in message
    assert "CSV UTF-8" in message


# Choosing the encoding from the whole file

MB = 1024 * 1024


def ascii_rows(size: int) -> bytes:
    """ASCII member rows, exactly `size` bytes."""
    rows = b"".join(b"m%07d@x.ca,Name\n" % n for n in range(size // 16 + 1))
    return rows[:size]


def encoding_of(content: bytes) -> str:
    return choose_encoding(io.BytesIO(content))


@pytest.mark.parametrize(
    ("content", "encoding"),
    [
        (b"email\nana@x.ca\n", UTF_8),  # ASCII: either reads the same; nothing changes
        (b"", UTF_8),
        ("email,first_name\nzoe@x.ca,Zoé\n".encode(), UTF_8),
        (BOM + b"email\nana@x.ca\n", UTF_8),  # a BOM is a valid UTF-8 sequence
        (WINDOWS_1252_CSV, WINDOWS_1252),
        (b"email,first_name\nzoe@x.ca,Zo\xe9", WINDOWS_1252),  # the last byte, alone
        (b"email,first_name\nzoe@x.ca,Zo\xc3", WINDOWS_1252),  # a sequence cut by the end
        # Valid UTF-8 accents and bad bytes together: a corrupt UTF-8 file.
        (HOSTILE_CSV, UTF_8),
        (b"email,first_name\nzoe@x.ca,Zo\xe9\nbea@x.ca," + "Béa\n".encode(), UTF_8),
        # A byte Windows-1252 leaves undefined: not Windows-1252.
        (WINDOWS_1252_CSV + b"odd@x.ca;Odd\x81\r\n", UTF_8),
        (WINDOWS_1252_CSV + b"odd@x.ca;Odd\x9d\r\n", UTF_8),
        (b"email\nodd@x.ca\x8f\n", UTF_8),
        # Refused anyway, whatever the encoding (see test_refusals_hold_in_windows_1252).
        (UTF16, WINDOWS_1252),
    ],
)
def test_choose_encoding(content: bytes, encoding: str) -> None:
    assert encoding_of(content) == encoding


def test_the_whole_file_decides_not_its_start() -> None:
    # The first accent well past the first megabyte and the 64 KiB sniffing window.
    late_1252 = b"email,first_name\n" + ascii_rows(3 * MB) + b"zoe@x.ca,Zo\xe9\n"
    assert encoding_of(late_1252) == WINDOWS_1252
    # Windows-1252 bytes early, a valid UTF-8 accent megabytes later: corrupt UTF-8.
    late_utf8 = b"email,first_name\nzoe@x.ca,Zo\xe9\n" + ascii_rows(3 * MB) + "Béa\n".encode()
    assert encoding_of(late_utf8) == UTF_8
    # The same, with the undefined byte coming last.
    assert encoding_of(late_1252 + ascii_rows(MB) + b"\x90\n") == UTF_8


@pytest.mark.parametrize("edge", [MB - 1, MB - 2, MB])
def test_a_sequence_cut_by_a_block_edge(edge: int) -> None:
    # "é" in UTF-8 (C3 A9) straddling or next to the scan's 1 MB block edge is still seen.
    start = b"email,first_name\nzoe@x.ca,Zo\xe9\n"
    content = start + ascii_rows(edge - len(start)) + "é\n".encode()
    assert encoding_of(content) == UTF_8
    # A lone lead byte at the edge, then ASCII: not UTF-8.
    content = start + ascii_rows(edge - len(start)) + b"\xc3\n" + ascii_rows(100)
    assert encoding_of(content) == WINDOWS_1252


def test_windows_1252_file_reads_with_its_accents() -> None:
    member_csv = open_member_csv(io.BytesIO(WINDOWS_1252_CSV), WINDOWS_1252)
    assert member_csv.encoding == WINDOWS_1252
    assert member_csv.delimiter == ";"
    assert member_csv.columns.headers[1] == "Prénom"
    rows = list(member_csv)
    assert all(isinstance(row, ParsedRow) for row in rows), rows
    found = {
        row.email: (row.first_name, row.last_name, row.language, row.attributes)  # type: ignore[union-attr]
        for row in rows
    }
    assert found == WINDOWS_1252_MEMBERS


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (NOT_CSV, "This file is not a CSV file (it contains binary data)."),
        (b"PK\x03\x04\x14\x00\x06\x00\x08\x00\x00\x00!\x00", "This file is not a CSV file"),
        (b"email\nana@x.ca\x00\n", "This file is not a CSV file (it contains binary data)."),
        (UTF16, "This file is UTF-16 text, not UTF-8."),
        (b"\x01\x02\x03\x04\x05\x06\x07\x08\xe9\n", "This file is not a CSV file"),
        (b"\n\r\n", "The file is empty."),
        ("Nom;Prénom\nRoy;Zoé\n".encode("cp1252"), "The file has no 'email' column"),
    ],
)
def test_refusals_hold_in_windows_1252(content: bytes, message: str) -> None:
    with pytest.raises(CsvRefused) as refused:
        open_member_csv(io.BytesIO(content), WINDOWS_1252)
    assert refused.value.message.startswith(message)


# Refusals


@pytest.mark.parametrize(
    "content",
    [
        b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR",
        b"PK\x03\x04\x14\x00\x06\x00\x08\x00\x00\x00!\x00",  # an .xlsx workbook
        b"email\nana@x.ca\x00\n",
        bytes(range(256)) * 10,
        b"\xde\xad\xbe\xef\xfe" * 1000,  # no NUL, but hardly any valid UTF-8
    ],
    ids=["png", "xlsx", "nul", "all-bytes", "undecodable"],
)
def test_binary_file_is_refused(content: bytes) -> None:
    message = refusal(content)
    assert message.startswith("This file is not a CSV file (it contains binary data).")


def test_utf16_file_is_refused_with_a_hint() -> None:
    message = refusal("email\nana@x.ca\n".encode("utf-16"))
    assert message.startswith("This file is UTF-16 text, not UTF-8.")


@pytest.mark.parametrize("content", [b"", BOM, b"\n\n", b"  \r\n\t\n"])
def test_empty_file_is_refused(content: bytes) -> None:
    assert refusal(content) == "The file is empty."


def test_header_that_is_not_csv_is_refused() -> None:
    message = refusal('email,"notes\n' + "x" * 140_000 + "\nana@x.ca\n")
    assert message.startswith("The header line of the file is not valid CSV")


def test_header_without_names_is_refused() -> None:
    assert refusal(",,\nana@x.ca,,\n").startswith("The file has no header line")


def test_missing_email_column_is_refused_with_the_columns_found() -> None:
    assert refusal("name,phone\nAna,555-0100\n") == (
        "The file has no 'email' column. Columns found: name, phone."
    )


def test_data_without_header_is_refused_as_such() -> None:
    message = refusal("ana@x.ca,Ana,Roy\nbob@x.ca,Bob,Roy\n")
    assert message.startswith("The first line of the file looks like a member, not column names")


@pytest.mark.parametrize(
    ("header", "message"),
    [
        (
            "Email,name,E-mail",
            "The file has two columns for email: 'Email' (column 1) and 'E-mail' (column 3). "
            "Remove or rename one of them.",
        ),
        (
            "email,Prénom,first name",
            "The file has two columns for first_name: 'Prénom' (column 2) and 'first name' "
            "(column 3). Remove or rename one of them.",
        ),
        (
            "email,Shift,shift",
            "The file has two columns named 'shift' (columns 2 and 3, the first written "
            "'Shift'). Remove or rename one of them.",
        ),
        (
            "email,Shift,Shift",
            "The file has two columns named 'Shift' (columns 2 and 3). "
            "Remove or rename one of them.",
        ),
    ],
)
def test_duplicate_header_is_refused(header: str, message: str) -> None:
    assert refusal(header + "\nana@x.ca,a,b\n") == message


def test_refusal_happens_before_any_row_is_read() -> None:
    # open_member_csv raises; there is no half-read file to iterate.
    with pytest.raises(CsvRefused):
        open_member_csv(io.BytesIO(b"name\n" + b"ana@x.ca\n" * 100_000))


# Header mapping


@pytest.mark.parametrize(
    ("header", "field"),
    [
        ("Email", "email"),
        ("E-mail", "email"),
        ("EMAIL ADDRESS", "email"),
        ("email_address", "email"),
        ("Courriel", "email"),
        ("Adresse courriel", "email"),
        ("First Name", "first_name"),
        ("first_name", "first_name"),
        ("FirstName", "first_name"),
        ("Given name", "first_name"),
        ("Prénom", "first_name"),
        ("Pre\u0301nom", "first_name"),  # decomposed é, as macOS may write it
        ("Last name", "last_name"),
        ("Surname", "last_name"),
        ("Family Name", "last_name"),
        ("Nom de famille", "last_name"),
        ("Nom", "last_name"),
        ("Language", "language"),
        ("lang", "language"),
        ("Langue", "language"),
        ("Preferred language", "language"),
        ("Postal code", "postal_code"),
        ("postal_code", "postal_code"),
        ("Postcode", "postal_code"),
        ("ZIP", "postal_code"),
        ("Code postal", "postal_code"),
        ("Local", "local"),
        ("Chapter", "local"),
        ("Local number", "local"),
        ("Section locale", "local"),
        ("  Section   Locale  ", "local"),
        ("\ufeff\ufeffEmail", "email"),  # two BOMs, the first one read as the BOM
        ("E\u200bmail", "email"),
    ],
)
def test_header_aliases(header: str, field: str) -> None:
    names = [header, "extra"] if field == "email" else ["email", header]
    columns = open_csv(",".join(names) + "\n").columns
    assert columns.standard[field] == names.index(header)


def test_custom_attributes_keep_their_header_text_and_only_non_empty_values() -> None:
    content = "email, Member since ,Shift,,Steward\nana@x.ca,2019,nights,ignored,\n"
    member_csv = open_csv(content)
    assert member_csv.columns.attributes == (("Member since", 1), ("Shift", 2), ("Steward", 4))
    assert member_csv.columns.ignored == (3,)
    (row,) = member_csv
    assert row == member(2, "ana@x.ca", attributes={"Member since": "2019", "Shift": "nights"})


def test_french_file() -> None:
    content = (
        "Courriel;Prénom;Nom;Langue;Code postal;Section locale\n"
        "Zoe.Roy@Exemple.QC.CA;Zoé;Roy;Français;h2x1y4;Section 301\n"
    )
    assert parsed(content) == [
        member(
            2,
            "zoe.roy@exemple.qc.ca",
            first_name="Zoé",
            last_name="Roy",
            language="fr",
            postal_code="H2X 1Y4",
            local="Section 301",
        )
    ]


# Field values


def test_mixed_case_emails_are_normalised() -> None:
    rows = parsed("email\nAna.Roy@Example.COM\n  BOB@X.CA  \nZoé@Bücher.ch\n")
    assert [row.email for row in rows] == ["ana.roy@example.com", "bob@x.ca", "zoé@bücher.ch"]


def test_duplicates_are_left_to_the_database_step() -> None:
    rows = parsed("email\nana@x.ca\nANA@X.CA\n")
    assert [(row.line, row.email) for row in rows] == [(2, "ana@x.ca"), (3, "ana@x.ca")]


@pytest.mark.parametrize(
    "value", ["=SUM(A1:A9)", "+1-555-0100", "-2+3", "@SUM(1)", '=HYPERLINK("http://x")']
)
def test_formula_looking_values_are_kept_as_data(value: str) -> None:
    quoted = '"' + value.replace('"', '""') + '"'
    row = parsed(f"email,first_name,notes\nana@x.ca,{quoted},{quoted}\n")[0]
    assert row.first_name == value
    assert row.attributes == {"notes": value}


@pytest.mark.parametrize(
    ("cell", "language"),
    [
        ("en", "en"),
        ("EN", "en"),
        ("English", "en"),
        ("anglais", "en"),
        ("en-CA", "en"),
        ("en_US", "en"),
        ("English (Canada)", "en"),
        ("fr", "fr"),
        ("FR", "fr"),
        ("French", "fr"),
        ("français", "fr"),
        ("Francais", "fr"),
        ("fr_CA", "fr"),
        ("FR-ca", "fr"),
        ("", None),
        ("   ", None),
    ],
)
def test_language_values(cell: str, language: str | None) -> None:
    assert parsed(f"email,language\nana@x.ca,{cell}\n")[0].language == language


@pytest.mark.parametrize("cell", ["es", "Español", "zh-CN", "e", "englishh"])
def test_unknown_language_imports_the_row_without_it(cell: str) -> None:
    rows = read(f"email,language,first_name\nana@x.ca,{cell},Ana\n")
    warning = f"unknown language '{cell}' (use en or fr): imported without it"
    assert rows == [
        member(
            2,
            "ana@x.ca",
            first_name="Ana",
            warnings=(warning + " (new members get English)",),
        )
    ]


@pytest.mark.parametrize(
    ("cell", "postal_code"),
    [
        ("H2X 1Y4", "H2X 1Y4"),
        ("h2x1y4", "H2X 1Y4"),
        ("k1a-0b1", "K1A 0B1"),
        ("K1A  0B1", "K1A 0B1"),
        ("90210", "90210"),  # a US ZIP code: kept as written
        ("D1A 1A1", "D1A 1A1"),  # no Canadian code starts with D
        ("SW1A 1AA", "SW1A 1AA"),
        ("", None),
    ],
)
def test_postal_codes(cell: str, postal_code: str | None) -> None:
    assert parsed(f"email,postal code\nana@x.ca,{cell}\n")[0].postal_code == postal_code


def test_field_too_long_is_left_out_and_the_member_imported() -> None:
    long_name = "x" * 10_000
    rows = read(f"email,first_name,Notes\nana@x.ca,{long_name},{long_name}\nbob@x.ca,Bob,\n")
    assert rows == [
        member(
            2,
            "ana@x.ca",
            warnings=(
                "field 'first_name' is longer than 1000 characters: imported without it",
                "field 'Notes' is longer than 1000 characters: imported without it",
            ),
        ),
        member(3, "bob@x.ca", first_name="Bob"),
    ]


def test_an_address_too_long_skips_the_row() -> None:
    rows = read(f"email,first_name\n{'a' * 1001}@x.ca,Ana\n")
    assert rows == [SkippedRow(2, "field 'email' is longer than 1000 characters")]


def test_field_at_the_limit_is_imported() -> None:
    name = "x" * MAX_FIELD_LENGTH
    assert parsed(f"email,Notes\nana@x.ca,{name}\n")[0].attributes == {"Notes": name}


def test_long_value_in_a_column_without_header_is_ignored() -> None:
    assert parsed(f"email,,name\nana@x.ca,{'x' * 5000},Ana\n")[0].attributes == {"name": "Ana"}


def test_missing_email() -> None:
    assert skips("email,first_name\n,Ana\n   ,Bob\n") == [
        (2, "missing email"),
        (3, "missing email"),
    ]


def test_invalid_email_reason_is_email_validators_message() -> None:
    rows = read("email\nana@@x.ca\nbob@x.local\n")
    assert rows == [
        SkippedRow(
            2,
            "invalid email address: The part after the @-sign contains invalid characters: '@'.",
            "ana@@x.ca",
        ),
        SkippedRow(
            3,
            "invalid email address: The part after the @-sign is a special-use or reserved "
            "name that cannot be used with email.",
            "bob@x.local",
        ),
    ]


def test_long_invalid_email_is_truncated_in_the_report() -> None:
    (row,) = read(f"email\n{'a' * 300}\n")
    assert isinstance(row, SkippedRow)
    assert row.email == "a" * 100 + "…"


def test_fewer_fields_than_headers_are_empty() -> None:
    assert parsed("email,first_name,last_name\nana@x.ca\nbob@x.ca,Bob\n") == [
        member(2, "ana@x.ca"),
        member(3, "bob@x.ca", first_name="Bob"),
    ]


def test_more_fields_than_headers() -> None:
    content = "email,first_name\nana@x.ca,Ana,,  \nbob@x.ca,Bob,surprise\n"
    assert read(content) == [
        member(2, "ana@x.ca", first_name="Ana"),  # empty extras: harmless
        SkippedRow(3, "wrong number of fields (expected 2, found 3)", "bob@x.ca"),
    ]


# Hostile and pathological input


def test_unclosed_quote_is_reported_and_reading_goes_on() -> None:
    content = 'email,notes\nana@x.ca,"' + "x" * 200_000 + "\nbob@x.ca,fine\n"
    rows = read(content)
    assert isinstance(rows[0], SkippedRow)
    assert rows[0].line == 2
    assert rows[0].reason.startswith("malformed CSV: field larger than field limit")
    assert rows[1:] == [member(3, "bob@x.ca", attributes={"notes": "fine"})]


def test_overlong_line_is_dropped_with_bounded_memory() -> None:
    content = "email,notes\nana@x.ca,ok\n" + "y," * 700_000 + "\nbob@x.ca,fine\n"
    assert read(content) == [
        member(2, "ana@x.ca", attributes={"notes": "ok"}),
        SkippedRow(3, "line 3 is longer than 1048576 characters"),
        member(4, "bob@x.ca", attributes={"notes": "fine"}),
    ]


class CountingStream(io.RawIOBase):
    """A non-seekable stream that counts what is read from it."""

    def __init__(self, data: bytes) -> None:
        self._data = io.BytesIO(data)
        self.consumed = 0

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: memoryview) -> int:  # type: ignore[override]
        chunk = self._data.read(min(len(buffer), 4096))
        buffer[: len(chunk)] = chunk
        self.consumed += len(chunk)
        return len(chunk)


def test_reading_is_incremental_and_needs_no_seek() -> None:
    data = ("email,first_name\n" + "".join(f"m{i}@x.ca,M\n" for i in range(200_000))).encode()
    stream = CountingStream(data)
    member_csv = open_member_csv(stream)  # type: ignore[arg-type]
    assert stream.consumed <= 64 * 1024
    rows = iter(member_csv)
    assert next(rows) == member(2, "m0@x.ca", first_name="M")
    assert stream.consumed <= 3 * 64 * 1024 < len(data)
    assert sum(1 for _ in rows) == 199_999
    assert stream.consumed == len(data)


def test_can_be_iterated_only_once() -> None:
    member_csv = open_csv("email\nana@x.ca\n")
    list(member_csv)
    with pytest.raises(RuntimeError):
        list(member_csv)


def test_hostile_file_gives_exactly_the_valid_rows_and_the_right_skips() -> None:
    lines = [
        BOM + "Courriel;Prénom;Nom;Langue;Code postal;Section locale;Notes".encode(),  # 1
        b"Ana.ROY@Example.com;Ana;Roy;FR;h2x 1y4;301;=SUM(A1:A9)",  # 2
        b"",  # 3
        b"ren\xe9@x.ca;Ren\xe9;Roy;fr;;;",  # 4
        b'bob@x.ca;Bob;"Le ; Blanc";en;;;"two',  # 5
        b'lines"',  # 6
        b";Joe;Nobody;;;;",  # 7
        b"not-an-email;A;B;;;;",  # 8
        b"long@x.ca;" + b"x" * 10_000 + b";B;;;;",  # 9
        b"ANA.roy@EXAMPLE.COM;Ana;Roy again;;;;",  # 10
        b"kl@x.ca;K;L;klingon;;;",  # 11
        b"extra@x.ca;E;F;en;;;;surprise",  # 12
        b";;;;;;",  # 13
        b"  ",  # 14
        b'formula@x.ca;"=HYPERLINK(""http://evil"")";+1-555;;@SUM(1);-2+3;\t=1',  # 15
        b'"  MiXeD@Case.CA  ";M;C;EN-ca;k1a0b1;;',  # 16
        b"bob@x.local;Bob;Local;;;;",  # 17
        b"last@x.ca;Last;One",  # 18, no newline at the end of the file
    ]
    rows = read(b"\r\n".join(lines))
    assert [row for row in rows if isinstance(row, ParsedRow)] == [
        member(
            2,
            "ana.roy@example.com",
            first_name="Ana",
            last_name="Roy",
            language="fr",
            postal_code="H2X 1Y4",
            local="301",
            attributes={"Notes": "=SUM(A1:A9)"},
        ),
        member(
            5,
            "bob@x.ca",
            first_name="Bob",
            last_name="Le ; Blanc",
            language="en",
            attributes={"Notes": "two\r\nlines"},
        ),
        member(
            9,
            "long@x.ca",
            last_name="B",
            warnings=("field 'Prénom' is longer than 1000 characters: imported without it",),
        ),
        member(10, "ana.roy@example.com", first_name="Ana", last_name="Roy again"),
        member(
            11,
            "kl@x.ca",
            first_name="K",
            last_name="L",
            warnings=(
                "unknown language 'klingon' (use en or fr): imported without it "
                "(new members get English)",
            ),
        ),
        member(
            15,
            "formula@x.ca",
            first_name='=HYPERLINK("http://evil")',
            last_name="+1-555",
            language=None,
            postal_code="@SUM(1)",
            local="-2+3",
            attributes={"Notes": "=1"},
        ),
        member(
            16,
            "mixed@case.ca",
            first_name="M",
            last_name="C",
            language="en",
            postal_code="K1A 0B1",
        ),
        member(18, "last@x.ca", first_name="Last", last_name="One"),
    ]
    assert [(row.line, row.reason) for row in rows if isinstance(row, SkippedRow)] == [
        (4, "not valid UTF-8"),
        (7, "missing email"),
        (8, "invalid email address: An email address must have an @-sign."),
        (12, "wrong number of fields (expected 7, found 8)"),
        (
            17,
            "invalid email address: The part after the @-sign is a special-use or reserved "
            "name that cannot be used with email.",
        ),
    ]
