"""The fake SendGrid server, driven over real HTTP, mostly through the official client."""

from __future__ import annotations

import http.client
import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import closing
from pathlib import Path
from typing import Any

import pytest
import sendgrid
from python_http_client.exceptions import (
    BadRequestsError,
    HTTPError,
    InternalServerError,
    TooManyRequestsError,
)

from tests.fakes.sendgrid import FIXTURES_DIR, SCHEMA_PATH, FakeSendGrid

REPO_ROOT = Path(__file__).resolve().parents[2]
AUTH = {"Authorization": "Bearer SG.test", "Content-Type": "application/json"}


@pytest.fixture
def fake() -> Iterator[FakeSendGrid]:
    with FakeSendGrid() as server:
        yield server
    assert server.internal_errors == []


@pytest.fixture
def sg_client(fake: FakeSendGrid) -> sendgrid.SendGridAPIClient:
    """The official client, pointed at the fake (named apart from the Flask test client)."""
    return sendgrid.SendGridAPIClient(api_key="SG.test", host=fake.url)


def campaign_body(*emails: str) -> dict[str, Any]:
    """A batch as the send worker builds it: one personalization per member."""
    emails = emails or ("amar@example.org", "bea@example.org")
    return {
        "from": {"email": "alerts@local1234.example.ca", "name": "Local 1234"},
        "subject": "Day of action, -name-: rally on December 17",
        "content": [
            {"type": "text/plain", "value": "Hello -name-, sign the petition: -link-"},
            {"type": "text/html", "value": "<p>Hello -name-, <a href='-link-'>sign</a></p>"},
        ],
        "custom_args": {"campaign_id": "c42", "kind": "alert"},
        "personalizations": [
            {
                "to": [{"email": email, "name": f"Member {index}"}],
                "custom_args": {"delivery_id": f"d{index}", "kind": "member"},
                "substitutions": {
                    "-name-": f"Member {index}",
                    "-link-": f"https://r.example/c/{index}",
                },
                "headers": {
                    "List-Unsubscribe": f"<https://r.example/u/tok{index}>",
                    "List-Unsubscribe-Post": "List-Unsubscribe=One-Click",
                },
            }
            for index, email in enumerate(emails)
        ],
        "tracking_settings": {
            "click_tracking": {"enable": False, "enable_text": False},
            "open_tracking": {"enable": False},
            "subscription_tracking": {"enable": False},
        },
    }


def send(client: sendgrid.SendGridAPIClient, body: dict[str, Any], **kwargs: Any) -> Any:
    return client.client.mail.send.post(request_body=body, **kwargs)


def refusal(client: sendgrid.SendGridAPIClient, body: dict[str, Any]) -> tuple[int, list[Any]]:
    with pytest.raises(HTTPError) as caught:
        send(client, body)
    return caught.value.status_code, json.loads(caught.value.body)["errors"]


def post_raw(
    port: int, path: str, data: bytes, headers: dict[str, str] | None = None
) -> tuple[int, http.client.HTTPMessage, bytes]:
    with closing(http.client.HTTPConnection("127.0.0.1", port, timeout=10)) as conn:
        conn.request("POST", path, body=data, headers=AUTH if headers is None else headers)
        response = conn.getresponse()
        return response.status, response.headers, response.read()


def get_json(port: int, path: str) -> Any:
    with closing(http.client.HTTPConnection("127.0.0.1", port, timeout=10)) as conn:
        conn.request("GET", path)
        response = conn.getresponse()
        assert response.status == 200
        return json.loads(response.read())


# --------------------------------------------------------------------------- accepted


def test_official_client_request_is_accepted_and_recorded(
    fake: FakeSendGrid, sg_client: sendgrid.SendGridAPIClient
) -> None:
    response = send(sg_client, campaign_body("Amar@Example.org", "bea@example.org"))

    assert response.status_code == 202
    assert response.body == b""
    message_id = response.headers["X-Message-Id"]
    assert len(message_id) == 22
    first, second = fake.records
    assert first.email == "amar@example.org"
    assert first.message_id == second.message_id == message_id
    # Personalization-level custom_args win over message-level ones, keys are merged.
    assert first.custom_args == {"campaign_id": "c42", "kind": "member", "delivery_id": "d0"}
    assert first.headers == {
        "List-Unsubscribe": "<https://r.example/u/tok0>",
        "List-Unsubscribe-Post": "List-Unsubscribe=One-Click",
    }
    assert first.subject == "Day of action, Member 0: rally on December 17"
    assert second.render("text/plain") == (
        "Hello Member 1, sign the petition: https://r.example/c/1"
    )
    assert fake.count_by_email() == Counter({"amar@example.org": 1, "bea@example.org": 1})
    assert fake.requests == 1
    assert [request.message_id for request in fake.accepted] == [message_id]


def test_keep_bodies_false_keeps_only_email_and_custom_args() -> None:
    with FakeSendGrid(keep_bodies=False) as fake:
        client = sendgrid.SendGridAPIClient(api_key="SG.test", host=fake.url)
        send(client, campaign_body("amar@example.org"))
        (record,) = fake.records
        assert record.email == "amar@example.org"
        assert record.custom_args["delivery_id"] == "d0"
        assert (record.subject, record.headers, record.content) == (None, None, None)
        assert fake.accepted == []


def test_http_keep_alive_serves_several_requests_on_one_connection(fake: FakeSendGrid) -> None:
    with closing(http.client.HTTPConnection("127.0.0.1", fake.port, timeout=10)) as conn:
        sockets = []
        for index in range(3):
            body = json.dumps(campaign_body(f"member{index}@example.org")).encode()
            conn.request("POST", "/v3/mail/send", body=body, headers=AUTH)
            response = conn.getresponse()
            assert (response.status, response.read()) == (202, b"")
            sockets.append(conn.sock)
        assert sockets[0] is not None
        assert sockets.count(sockets[0]) == 3
    assert len(fake.records) == 3


def test_concurrent_requests_are_all_recorded(fake: FakeSendGrid) -> None:
    def worker(offset: int) -> None:
        client = sendgrid.SendGridAPIClient(api_key="SG.test", host=fake.url)
        for index in range(10):
            send(client, campaign_body(f"m{offset}-{index}@example.org"))

    threads = [threading.Thread(target=worker, args=(offset,)) for offset in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(10)
    assert fake.requests == 80
    assert len(fake.records) == 80
    assert len(fake.count_by_email()) == 80


# --------------------------------------------------------------------------- refused


def too_many_recipients(body: dict[str, Any]) -> None:
    body["personalizations"][0]["bcc"] = [{"email": f"b{i}@example.org"} for i in range(999)]


def duplicate_across_personalizations(body: dict[str, Any]) -> None:
    body["personalizations"][1]["to"][0]["email"] = "AMAR@example.org"


def duplicate_within_personalization(body: dict[str, Any]) -> None:
    body["personalizations"][0]["cc"] = [{"email": "amar@example.org"}]


def custom_args_too_large(body: dict[str, Any]) -> None:
    # Each alone is under 10,000 bytes; message-level and personalization-level combined are not.
    body["custom_args"]["pad"] = "x" * 6000
    body["personalizations"][0]["custom_args"]["pad2"] = "y" * 4000


def substitutions_too_large(body: dict[str, Any]) -> None:
    body["personalizations"][1]["substitutions"]["-name-"] = "é" * 5000


def html_before_plain(body: dict[str, Any]) -> None:
    body["content"].reverse()


def send_at_too_far(body: dict[str, Any]) -> None:
    body["send_at"] = int(time.time()) + 73 * 3600


def missing_from(body: dict[str, Any]) -> None:
    del body["from"]


def integer_custom_arg(body: dict[str, Any]) -> None:
    body["personalizations"][0]["custom_args"]["delivery_id"] = 42


def personalization_without_to(body: dict[str, Any]) -> None:
    del body["personalizations"][1]["to"]


def reserved_header(body: dict[str, Any]) -> None:
    body["personalizations"][0]["headers"]["From"] = "someone@example.org"


def no_subject(body: dict[str, Any]) -> None:
    del body["subject"]


def no_personalization(body: dict[str, Any]) -> None:
    body["personalizations"] = []


@pytest.mark.parametrize(
    ("mutate", "field", "words"),
    [
        (too_many_recipients, "personalizations", "no more than 1000"),
        (duplicate_across_personalizations, "personalizations.1.to", "[amar@example.org]"),
        (duplicate_within_personalization, "personalizations.0.cc", "duplicate"),
        (custom_args_too_large, "personalizations.0.custom_args", "10000 bytes"),
        (substitutions_too_large, "personalizations.1.substitutions", "10000 bytes"),
        (html_before_plain, "content", "text/plain content must be first"),
        (send_at_too_far, "send_at", "72 hours"),
        (missing_from, "from", "'from' is a required property"),
        (integer_custom_arg, "personalizations.0.custom_args.delivery_id", "not of type"),
        (personalization_without_to, "personalizations.1.to", "'to' is a required property"),
        (reserved_header, "personalizations.0.headers", "reserved"),
        (no_subject, "subject", "subject is required"),
        (no_personalization, "personalizations", "at least one personalization"),
    ],
)
def test_invalid_request_is_refused_with_sendgrid_error(
    fake: FakeSendGrid,
    sg_client: sendgrid.SendGridAPIClient,
    mutate: Callable[[dict[str, Any]], None],
    field: str,
    words: str,
) -> None:
    body = campaign_body()
    mutate(body)

    status, errors = refusal(sg_client, body)

    assert status == 400
    assert any(e["field"] == field and words in e["message"] for e in errors), errors
    assert all(set(e) == {"message", "field", "help"} and e["help"] is None for e in errors)
    assert fake.records == []
    assert fake.stats()["rejected"] == 1


def test_cheap_limits_are_checked_even_when_schema_validation_is_not_sampled() -> None:
    with FakeSendGrid(validate_sample=0.0) as fake:
        client = sendgrid.SendGridAPIClient(api_key="SG.test", host=fake.url)
        for mutate in (duplicate_across_personalizations, integer_custom_arg, html_before_plain):
            body = campaign_body()
            mutate(body)
            with pytest.raises(BadRequestsError):
                send(client, body)
        # The price of sampling: what only the schema knows gets through unvalidated.
        body = campaign_body()
        body["categories"] = ["c"] * 11
        assert send(client, body).status_code == 202
        assert fake.stats()["validated"] == 0


def test_malformed_body_is_explained_by_the_schema_even_when_not_sampled() -> None:
    with FakeSendGrid(validate_sample=0.0) as fake:
        client = sendgrid.SendGridAPIClient(api_key="SG.test", host=fake.url)
        body = campaign_body()
        body["personalizations"][0]["to"] = "amar@example.org"

        status, errors = refusal(client, body)

        assert status == 400
        assert errors[0]["field"] == "personalizations.0.to"
        assert "not of type 'array'" in errors[0]["message"]


def test_validate_sample_validates_the_first_request_then_one_in_n() -> None:
    with FakeSendGrid(validate_sample=0.25) as fake:
        client = sendgrid.SendGridAPIClient(api_key="SG.test", host=fake.url)
        for index in range(8):
            send(client, campaign_body(f"m{index}@example.org"))
        assert fake.stats()["validated"] == 2


def test_body_that_is_not_json_is_400(fake: FakeSendGrid) -> None:
    status, _, body = post_raw(fake.port, "/v3/mail/send", b'{"personalizations": [')
    assert status == 400
    assert "not valid JSON" in json.loads(body)["errors"][0]["message"]


def test_body_of_30_mb_is_413(fake: FakeSendGrid) -> None:
    status, _, body = post_raw(fake.port, "/v3/mail/send", b" " * 30_000_000)
    assert status == 413
    assert json.loads(body)["errors"][0]["message"] == "content too large"


@pytest.mark.parametrize(
    "headers",
    [{}, {"Authorization": "Basic dXNlcjpwYXNz"}, {"Authorization": "Bearer "}],
    ids=["none", "basic", "empty-bearer"],
)
def test_request_without_bearer_token_is_401(fake: FakeSendGrid, headers: dict[str, str]) -> None:
    data = json.dumps(campaign_body()).encode()
    status, _, body = post_raw(fake.port, "/v3/mail/send", data, headers)
    assert status == 401
    assert json.loads(body)["errors"][0]["message"] == "authorization required"
    assert fake.records == []


def test_api_key_when_given_is_the_only_one_let_in() -> None:
    with FakeSendGrid(api_key="SG.right") as fake:
        wrong = sendgrid.SendGridAPIClient(api_key="SG.wrong", host=fake.url)
        with pytest.raises(HTTPError) as caught:
            send(wrong, campaign_body())
        assert caught.value.status_code == 401
        right = sendgrid.SendGridAPIClient(api_key="SG.right", host=fake.url)
        assert send(right, campaign_body()).status_code == 202


# --------------------------------------------------------------------------- failure modes


def test_429_mode_tells_when_the_rate_limit_resets(
    fake: FakeSendGrid, sg_client: sendgrid.SendGridAPIClient
) -> None:
    fake.set_mode("429", reset_in=30)

    with pytest.raises(TooManyRequestsError) as caught:
        send(sg_client, campaign_body())

    assert json.loads(caught.value.body) == {
        "errors": [{"field": None, "message": "too many requests"}]
    }
    headers = caught.value.headers
    assert headers["X-RateLimit-Remaining"] == "0"
    assert int(headers["X-RateLimit-Limit"]) > 0
    assert time.time() + 29 < int(headers["X-RateLimit-Reset"]) <= time.time() + 31
    assert fake.records == []
    fake.set_mode("ok")
    assert send(sg_client, campaign_body()).status_code == 202


@pytest.mark.parametrize(
    ("mode", "error"), [("500", InternalServerError), ("400", BadRequestsError)]
)
def test_error_modes_fail_every_request_and_record_nothing(
    fake: FakeSendGrid,
    sg_client: sendgrid.SendGridAPIClient,
    mode: Any,
    error: type[HTTPError],
) -> None:
    fake.set_mode(mode)
    for _ in range(2):
        with pytest.raises(error) as caught:
            send(sg_client, campaign_body())
        assert json.loads(caught.value.body)["errors"][0]["message"]
    assert fake.records == []
    assert fake.stats()["rejected"] == 2


def test_fail_next_fails_only_the_next_requests(
    fake: FakeSendGrid, sg_client: sendgrid.SendGridAPIClient
) -> None:
    fake.fail_next(2, "500")
    for _ in range(2):
        with pytest.raises(InternalServerError):
            send(sg_client, campaign_body())
    assert send(sg_client, campaign_body()).status_code == 202
    assert len(fake.records) == 2


def test_hang_mode_times_out_the_client(
    fake: FakeSendGrid, sg_client: sendgrid.SendGridAPIClient
) -> None:
    fake.set_mode("hang")
    started = time.monotonic()
    with pytest.raises(TimeoutError):
        send(sg_client, campaign_body(), timeout=0.2)
    assert time.monotonic() - started < 2
    assert fake.records == []


def test_hang_after_accepting_records_the_batch_but_never_answers(
    fake: FakeSendGrid, sg_client: sendgrid.SendGridAPIClient
) -> None:
    fake.set_mode("hang", accepted=True)
    with pytest.raises(TimeoutError):
        send(sg_client, campaign_body(), timeout=0.2)
    assert len(fake.records) == 2


def test_stop_releases_a_hanging_request() -> None:
    fake = FakeSendGrid().start()
    fake.set_mode("hang")
    client = sendgrid.SendGridAPIClient(api_key="SG.test", host=fake.url)
    outcome: list[BaseException] = []

    def post() -> None:
        try:
            send(client, campaign_body(), timeout=60)
        except Exception as exc:
            outcome.append(exc)

    thread = threading.Thread(target=post)
    thread.start()
    deadline = time.monotonic() + 5
    while fake.requests == 0 and time.monotonic() < deadline:
        time.sleep(0.01)
    started = time.monotonic()

    fake.stop()
    thread.join(5)

    assert not thread.is_alive()
    assert time.monotonic() - started < 2
    (error,) = outcome
    assert isinstance(error, (OSError, http.client.HTTPException)), error


def test_random_failures_follow_the_rates_and_record_only_accepted_requests() -> None:
    def statuses(seed: int) -> list[int]:
        with (
            FakeSendGrid(validate_sample=0.0) as fake,
            closing(http.client.HTTPConnection("127.0.0.1", fake.port, timeout=10)) as conn,
        ):
            fake.set_random_failures(p429=0.2, p500=0.1, seed=seed)
            seen = []
            for index in range(600):
                body = json.dumps(campaign_body(f"m{index}@example.org")).encode()
                conn.request("POST", "/v3/mail/send", body=body, headers=AUTH)
                response = conn.getresponse()
                response.read()
                seen.append(response.status)
            accepted = {f"m{i}@example.org" for i, status in enumerate(seen) if status == 202}
            assert set(fake.count_by_email()) == accepted
            assert {record.email for record in fake.records} == accepted
            return seen

    first = statuses(seed=7)
    counts = Counter(first)
    assert set(counts) == {202, 429, 500}
    assert 80 <= counts[429] <= 160  # expected 120
    assert 30 <= counts[500] <= 90  # expected 60
    assert statuses(seed=7) == first  # a seed makes a run repeatable


# --------------------------------------------------------------------------- control over HTTP


def test_stats_endpoint_counts_recipients_and_duplicates(
    fake: FakeSendGrid, sg_client: sendgrid.SendGridAPIClient
) -> None:
    send(sg_client, campaign_body("amar@example.org", "bea@example.org"))
    send(sg_client, campaign_body("Amar@example.org", "chen@example.org"))  # a second copy
    fake.fail_next(1, "429")
    with pytest.raises(TooManyRequestsError):
        send(sg_client, campaign_body("dana@example.org"))

    stats = get_json(fake.port, "/__fake__/stats")

    assert stats["requests"] == 3
    assert stats["accepted_requests"] == 2
    assert stats["rejected"] == 1
    assert stats["accepted_recipients"] == 4
    assert stats["distinct_emails"] == 3
    assert stats["duplicates"] == 1


def test_mode_and_reset_endpoints(
    fake: FakeSendGrid, sg_client: sendgrid.SendGridAPIClient
) -> None:
    def control(path: str, payload: dict[str, Any]) -> tuple[int, Any]:
        status, _, body = post_raw(fake.port, path, json.dumps(payload).encode())
        return status, json.loads(body)

    assert control("/__fake__/mode", {"mode": "500"})[0] == 200
    with pytest.raises(InternalServerError):
        send(sg_client, campaign_body())
    assert control("/__fake__/mode", {"mode": "ok", "p429": 1.0, "seed": 1})[0] == 200
    with pytest.raises(TooManyRequestsError):
        send(sg_client, campaign_body())
    for refused in ({"mode": "teapot"}, {"mode": "500", "hang_seconds": "long"}, {"p5xx": 1}):
        status, answer = control("/__fake__/mode", refused)
        assert status == 400
        assert answer["errors"][0]["message"]
    # A refused change changes nothing, not even the part of it that was valid.
    assert (fake.stats()["mode"], fake.stats()["p429"]) == ("ok", 1.0)
    assert control("/__fake__/mode", {"p429": 0.0, "fail_next": 1, "fail_mode": "400"})[0] == 200
    with pytest.raises(BadRequestsError):
        send(sg_client, campaign_body())

    status, stats = control("/__fake__/reset", {})

    assert (status, stats["requests"], stats["mode"], stats["p429"]) == (200, 0, "ok", 0.0)
    assert send(sg_client, campaign_body()).status_code == 202


def test_runs_as_its_own_process_until_sigterm() -> None:
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT)}
    command = [sys.executable, "-m", "tests.fakes.sendgrid", "--port", "0"]
    command += ["--validate-sample", "0.01", "--no-bodies"]
    with subprocess.Popen(
        command, cwd=REPO_ROOT, env=env, stdout=subprocess.PIPE, text=True
    ) as proc:
        try:
            assert proc.stdout is not None
            url = proc.stdout.readline().strip()
            assert url.startswith("http://127.0.0.1:")
            client = sendgrid.SendGridAPIClient(api_key="SG.test", host=url)
            assert send(client, campaign_body()).status_code == 202
            stats = get_json(int(url.rsplit(":", 1)[1]), "/__fake__/stats")
            assert (stats["accepted_recipients"], stats["validated"]) == (2, 1)

            proc.send_signal(signal.SIGTERM)

            assert proc.wait(timeout=5) == 0
        finally:
            if proc.poll() is None:
                proc.kill()


# --------------------------------------------------------------------------- schema lookup


def test_the_schema_and_examples_are_read_from_the_repository() -> None:
    # A fresh clone has nothing beside it: the fixtures live in the repository, and their
    # README says where each file came from.
    repository = Path(__file__).resolve().parents[2]
    assert SCHEMA_PATH.is_file()
    assert FIXTURES_DIR.is_relative_to(repository)
    readme = (FIXTURES_DIR / "README.md").read_text(encoding="utf-8")
    for path in FIXTURES_DIR.iterdir():
        if path.name != "README.md":
            assert f"`{path.name}`" in readme, f"{path.name} is not described in README.md"


def test_an_address_may_come_again_in_a_later_request(
    fake: FakeSendGrid, sg_client: sendgrid.SendGridAPIClient
) -> None:
    # Uniqueness is per request, as at SendGrid; a second copy across requests is accepted
    # and counted, which is what tests of the exactly-once invariant look for.
    send(sg_client, campaign_body("amar@example.org", "bea@example.org"))
    send(sg_client, campaign_body("chen@example.org", "BEA@example.org"))
    assert fake.count_by_email()["bea@example.org"] == 2
    assert [record.email for record in fake.records].count("bea@example.org") == 2
