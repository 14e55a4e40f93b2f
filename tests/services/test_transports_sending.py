"""The SendGrid and SMTP transports: request shape, error kinds, partial and uncertain sends."""

from __future__ import annotations

import datetime as dt
import ipaddress
import json
import ssl
import time
from email import message_from_bytes, policy

import pytest
import python_http_client.client
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from app.emails.content import Identity, Recipient
from app.emails.render import build_skeleton
from app.emails.samples import SAMPLES
from app.services.transports import OutgoingBatch, OutgoingRecipient, TransportError
from app.services.transports.sendgrid import SendGridTransport, _retry_after, encode_body
from app.services.transports.smtp import SmtpTransport
from tests.fakes.sendgrid import FakeSendGrid
from tests.fakes.smtp import SmtpSink
from tests.support.servers import free_port

IDENTITY = Identity("Local 42", "1 Main St, Edmonton AB", "info@local42.example.org")


@pytest.fixture(scope="module")
def skeleton():
    return build_skeleton(
        SAMPLES[("action_alert", "en")], IDENTITY, tracking=True, base_url="https://t.example.org"
    )


def _batch(skeleton, emails, **fields) -> OutgoingBatch:
    recipients = [
        OutgoingRecipient(
            email=email,
            recipient=Recipient(
                first_name=f"Name{n}",
                open_token=f"open{n}",
                click_token=f"tok{n}",
                unsubscribe_url=f"https://t.example.org/u/tok{n}",
                preferences_url=f"https://t.example.org/u/tok{n}#preferences",
            ),
            delivery_id=n + 1,
            message_id=f"<d{n + 1}.c9@local42.example.org>",
            headers={
                "List-Unsubscribe": f"<https://t.example.org/u/tok{n}>",
                "List-Unsubscribe-Post": "List-Unsubscribe=One-Click",
            },
            custom_args={"rp_delivery": str(n + 1)},
        )
        for n, email in enumerate(emails)
    ]
    return OutgoingBatch(
        from_email="alerts@local42.example.org",
        from_name="Local 42",
        reply_to="office@local42.example.org",
        skeleton=skeleton,
        recipients=recipients,
        categories=("rallypoint", "campaign-9"),
        custom_args={"rp_campaign": "9"},
        **fields,
    )


# -- SendGrid ----------------------------------------------------------------------------


def test_sendgrid_request_passes_the_schema_with_a_message_id_header(skeleton):
    with FakeSendGrid() as fake:
        transport = SendGridTransport("SG.test", fake.url)
        result = transport.send_batch(_batch(skeleton, ["ana@example.org", "bo@example.org"]))
        [request] = fake.accepted
    assert result.provider_message_id == request.message_id
    assert fake.stats()["validated"] == 1
    first = request.body["personalizations"][0]
    assert first["to"] == [{"email": "ana@example.org", "name": "Name0"}]
    assert first["headers"]["Message-ID"] == "<d1.c9@local42.example.org>"
    assert first["custom_args"] == {"rp_delivery": "1"}
    assert request.body["subject"] == skeleton.subject  # once, with its keys
    pixel = next(p.key for p in skeleton.placeholders if p.field == "open_token")
    assert first["substitutions"][pixel] == "open0"


def test_sendgrid_request_body_is_never_formatted_into_a_log_message(skeleton, monkeypatch):
    """python_http_client's own post formats the whole body into a debug message, logging or
    not (~3 ms of CPU a 1,000-recipient request); the transport posts without it."""
    formatted: list[str] = []
    monkeypatch.setattr(python_http_client.client._logger, "debug", formatted.append)
    with FakeSendGrid() as fake:
        transport = SendGridTransport("SG.test", fake.url)
        result = transport.send_batch(_batch(skeleton, ["ana@example.org"]))
        [request] = fake.accepted
    assert result.provider_message_id == request.message_id
    assert formatted == []


def test_sendgrid_bodies_are_compact_utf8_json_that_means_the_body(skeleton):
    """The body is encoded by orjson; it must be the same compact JSON as the standard
    library's (UTF-8, no ASCII escapes, no spaces), whatever the names and values hold."""
    batch = _batch(skeleton, ["zoë@example.org", "bo@example.org"])
    batch.recipients[0] = OutgoingRecipient(
        "zoë@example.org", Recipient(first_name="Zoë «Ἀθηνᾶ»", last_name="\u2028 </script>")
    )
    body = SendGridTransport("SG.x", "http://127.0.0.1:1").build_body(batch)
    encoded = encode_body(body)
    assert encoded == json.dumps(body, ensure_ascii=False, separators=(",", ":")).encode()
    assert "Zoë".encode() in encoded


def test_sendgrid_names_lose_what_sendgrid_refuses(skeleton):
    batch = _batch(skeleton, ["ana@example.org"])
    batch.recipients[0] = OutgoingRecipient(
        "ana@example.org", Recipient(first_name='Ana; "Boss"', last_name="Smith, Jr")
    )
    body = SendGridTransport("SG.x", "http://127.0.0.1:1").build_body(batch)
    assert body["personalizations"][0]["to"][0]["name"] == "Ana   Boss  Smith  Jr"


def test_sendgrid_refuses_more_than_a_thousand(skeleton):
    batch = _batch(skeleton, [f"m{n}@example.org" for n in range(1001)])
    with pytest.raises(ValueError, match="1000"):
        SendGridTransport("SG.x", "http://127.0.0.1:1").build_body(batch)


@pytest.mark.parametrize(
    ("mode", "retryable", "status", "text"),
    [
        ("400", False, 400, "The from email does not contain a valid address. (from.email)"),
        ("500", True, 500, "internal server error"),
        ("429", True, 429, "too many requests"),
    ],
)
def test_sendgrid_errors_are_classified(skeleton, mode, retryable, status, text):
    with FakeSendGrid() as fake:
        fake.fail_next(1, mode, reset_in=4)
        with pytest.raises(TransportError) as caught:
            SendGridTransport("SG.test", fake.url).send_batch(_batch(skeleton, ["a@example.org"]))
    error = caught.value
    assert (error.retryable, error.status) == (retryable, status)
    assert text in str(error)
    assert error.uncertain == frozenset()
    if status == 429:
        assert error.retry_after is not None
        assert 2 < error.retry_after <= 5


def test_sendgrid_bad_key_is_not_retried(skeleton):
    with FakeSendGrid(api_key="SG.right") as fake, pytest.raises(TransportError) as caught:
        SendGridTransport("SG.wrong", fake.url).send_batch(_batch(skeleton, ["a@example.org"]))
    assert caught.value.status == 401
    assert not caught.value.retryable


def test_no_answer_after_the_request_left_is_uncertain(skeleton):
    with FakeSendGrid() as fake:
        fake.fail_next(1, "hang", accepted=True, hang_seconds=3)
        transport = SendGridTransport("SG.test", fake.url, read_timeout=0.3)
        started = time.monotonic()
        with pytest.raises(TransportError) as caught:
            transport.send_batch(_batch(skeleton, ["a@example.org", "b@example.org"]))
        assert time.monotonic() - started < 2
        assert fake.count_by_email() == {"a@example.org": 1, "b@example.org": 1}
    assert caught.value.retryable
    assert caught.value.uncertain == {"a@example.org", "b@example.org"}


def test_a_refused_connection_is_retried_and_certain(skeleton):
    transport = SendGridTransport("SG.test", f"http://127.0.0.1:{free_port()}")
    with pytest.raises(TransportError) as caught:
        transport.send_batch(_batch(skeleton, ["a@example.org"]))
    assert caught.value.retryable
    assert caught.value.uncertain == frozenset()


def test_retry_after_prefers_retry_after_then_the_reset():
    assert _retry_after({"Retry-After": "7"}, now=100.0) == 7.0
    assert _retry_after({"X-RateLimit-Reset": "112"}, now=100.0) == 12.0
    assert _retry_after({"X-RateLimit-Reset": "90"}, now=100.0) == 0.0
    assert _retry_after({"Retry-After": "Wed, 21 Oct 2015 07:28:00 GMT"}, now=1.0) is None
    assert _retry_after({}, now=1.0) is None


def test_from_config_reads_the_host_and_timeouts():
    transport = SendGridTransport.from_config(
        {
            "SENDGRID_API_KEY": "SG.k",
            "SENDGRID_API_HOST": "http://fake.url/",
            "SENDGRID_CONNECT_TIMEOUT": 2.0,
            "SENDGRID_READ_TIMEOUT": 9.0,
        }
    )
    assert transport.host == "http://fake.url"
    assert transport.read_timeout == 9.0
    with pytest.raises(ValueError, match="API key"):
        SendGridTransport.from_config({})
    # The request is opened by urllib, which would read file: or ftp: URLs too.
    for host in ("file:///etc/passwd", "ftp://fake.url", "fake.url"):
        with pytest.raises(ValueError, match="SENDGRID_API_HOST must be an http"):
            SendGridTransport("SG.x", host)


# -- SMTP --------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def tls(tmp_path_factory):
    """A self-signed certificate for localhost / 127.0.0.1, and contexts that trust it."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(days=1))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName(
                [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
            ),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    folder = tmp_path_factory.mktemp("tls")
    cert_path, key_path = folder / "cert.pem", folder / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    server = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server.load_cert_chain(cert_path, key_path)
    client = ssl.create_default_context(cafile=str(cert_path))
    return server, client


def _smtp(sink, mode, client_context, **fields) -> SmtpTransport:
    return SmtpTransport(
        "127.0.0.1",
        sink.port,
        username=fields.pop("username", "relay-user"),
        password=fields.pop("password", "relay-pass"),
        security=mode,
        timeout=5,
        ssl_context=client_context,
        **fields,
    )


@pytest.mark.parametrize("mode", ["starttls", "ssl"])
def test_smtp_sends_each_recipient_over_one_connection(skeleton, tls, mode):
    server, client = tls
    with SmtpSink(mode, server) as sink:
        result = _smtp(sink, mode, client).send_batch(
            _batch(skeleton, ["ana@example.org", "refuse@example.org", "bo@example.org"])
        )
    assert [m.recipients for m in sink.state.messages] == [["ana@example.org"], ["bo@example.org"]]
    assert {m.connection for m in sink.state.messages} == {1}
    assert sink.state.connections == 1
    assert result.refused == {"refuse@example.org": "550 5.1.1 no such user"}
    message = message_from_bytes(sink.state.messages[0].data, policy=policy.default)
    assert message["Message-ID"] == "<d1.c9@local42.example.org>"
    assert message["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    assert "Name0" in message.get_body(("plain",)).get_content()


def test_smtp_refused_login_is_not_retried(skeleton, tls):
    server, client = tls
    with SmtpSink("starttls", server) as sink, pytest.raises(TransportError) as caught:
        _smtp(sink, "starttls", client, password="wrong").send_batch(
            _batch(skeleton, ["ana@example.org"])
        )
    assert not caught.value.retryable
    assert "refused the login" in str(caught.value)


def test_smtp_deferral_says_what_already_left(skeleton, tls):
    server, client = tls
    with SmtpSink("starttls", server) as sink, pytest.raises(TransportError) as caught:
        _smtp(sink, "starttls", client).send_batch(
            _batch(skeleton, ["ana@example.org", "defer@example.org", "bo@example.org"])
        )
    assert caught.value.retryable
    assert caught.value.accepted == {"ana@example.org"}
    assert caught.value.uncertain == frozenset()


def test_smtp_dropped_connection_leaves_the_message_in_flight_uncertain(skeleton, tls):
    server, client = tls
    with SmtpSink("starttls", server) as sink:
        sink.state.drop_after = 2
        with pytest.raises(TransportError) as caught:
            _smtp(sink, "starttls", client).send_batch(
                _batch(skeleton, ["ana@example.org", "bo@example.org", "cy@example.org"])
            )
    assert caught.value.accepted == {"ana@example.org"}
    assert caught.value.uncertain == {"bo@example.org"}  # the sink had it, the answer was lost


def test_smtp_unreachable_is_retried(skeleton):
    transport = SmtpTransport("127.0.0.1", free_port(), security="none", timeout=2)
    with pytest.raises(TransportError) as caught:
        transport.send_batch(_batch(skeleton, ["ana@example.org"]))
    assert caught.value.retryable


def test_smtp_without_starttls_on_offer_is_a_clear_error(skeleton, tls):
    server, client = tls
    with (
        SmtpSink("none", server, require_auth=False) as sink,
        pytest.raises(TransportError, match="does not offer STARTTLS"),
    ):
        _smtp(sink, "starttls", client, username="").send_batch(
            _batch(skeleton, ["ana@example.org"])
        )


def test_smtp_from_config():
    transport = SmtpTransport.from_config(
        {"SMTP_HOST": "relay.example", "SMTP_PORT": 465, "SMTP_SECURITY": "ssl"}
    )
    assert (transport.host, transport.port, transport.security) == ("relay.example", 465, "ssl")
    with pytest.raises(ValueError, match="SMTP_SECURITY"):
        SmtpTransport("h", 25, security="tls")
