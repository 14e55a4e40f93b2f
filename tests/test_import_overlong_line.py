"""A file whose first line is 50 MB is refused for that reason, not as "empty".

The reader replaces a line over its limit with a blank one (so line numbers stay true);
when nothing else follows, the file looked empty and was refused as "The file is empty".
"""

from __future__ import annotations

import io

import pytest
import sqlalchemy as sa

from app.models import MemberImport, Role
from app.services.audience import lists
from app.services.audience.member_csv import CsvRefused, open_member_csv
from tests.support.forms import csrf_token

FIFTY_MB_LINE = b"email" + b"x" * (50 * 1024 * 1024)
REASON = "No header line was found: line 1 is longer than 1,048,576 characters"


@pytest.mark.parametrize("ending", [b"", b"\n", b"\n\n\n"])
def test_the_reader_gives_the_real_reason(ending):
    with pytest.raises(CsvRefused) as refused:
        open_member_csv(io.BytesIO(FIFTY_MB_LINE + ending))
    assert REASON in str(refused.value)
    assert "empty" not in str(refused.value)


def test_an_empty_file_is_still_called_empty():
    with pytest.raises(CsvRefused, match="The file is empty"):
        open_member_csv(io.BytesIO(b"\n\n"))


def test_the_cli_says_why(app, db_session, tmp_path):
    lists.create_list(db_session, name="All members")
    db_session.commit()
    path = tmp_path / "members.csv"
    path.write_bytes(FIFTY_MB_LINE)
    result = app.test_cli_runner().invoke(
        args=["members", "import", str(path), "--list", "All members"]
    )
    assert result.exit_code == 1
    assert REASON in result.output
    assert "empty" not in result.output


def _multipart(fields: dict[str, str], name: str, filename: str, content: bytes):
    # Encoded here rather than by the test client, whose encoder leaves a temporary file
    # open for a body this size (a ResourceWarning in whichever test runs next).
    boundary = "rallypoint-test-boundary"
    parts = [
        f'--{boundary}\r\nContent-Disposition: form-data; name="{key}"\r\n\r\n{value}\r\n'.encode()
        for key, value in fields.items()
    ]
    parts.append(
        f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"; filename="{filename}"\r\n'
        "Content-Type: text/csv\r\n\r\n".encode()
        + content
        + f"\r\n--{boundary}--\r\n".encode()
    )
    return b"".join(parts), f"multipart/form-data; boundary={boundary}"


def test_the_upload_says_why(app, client, login_as, db_session, tmp_path, monkeypatch):
    monkeypatch.setitem(app.config, "IMPORT_DIR", str(tmp_path))
    login_as(Role.ORGANIZER)
    lst = lists.create_list(db_session, name="All members")
    db_session.commit()
    url = f"/lists/{lst.id}/import"
    fields = {"csrf_token": csrf_token(client, url), "consent": "implied_membership"}
    body, content_type = _multipart(fields, "file", "members.csv", FIFTY_MB_LINE)
    response = client.post(url, data=body, content_type=content_type)
    assert response.status_code == 422
    page = response.get_data(as_text=True)
    assert REASON in page
    assert "The file is empty" not in page
    assert db_session.scalar(sa.select(sa.func.count()).select_from(MemberImport)) == 0
    assert list(tmp_path.iterdir()) == []
