"""The outbox transport writes one complete .eml per recipient, personalized."""

from __future__ import annotations

from email import message_from_bytes, policy

from app.emails.content import Identity, Recipient
from app.emails.render import build_skeleton
from app.emails.samples import SAMPLES
from app.services.transports import OutgoingBatch, OutgoingRecipient, get_transport


def test_outbox_writes_a_personalized_message_per_recipient(tmp_path):
    content = SAMPLES[("action_alert", "en")]
    skeleton = build_skeleton(
        content,
        Identity("Local 42", "1 Main St, Edmonton AB", "info@local42.example.org"),
        tracking=False,
        base_url="https://t.example.org",
        inert_url="https://t.example.org/inert",
    )
    batch = OutgoingBatch(
        from_email="alerts@local42.example.org",
        from_name="Local 42",
        reply_to="office@local42.example.org",
        skeleton=skeleton,
        subject_prefix="[TEST] ",
        recipients=[
            OutgoingRecipient("ana@example.org", Recipient(first_name="Ana")),
            OutgoingRecipient(
                "bo@example.org",
                Recipient(first_name="Bo & <Co>"),
                delivery_id=7,
                message_id="<d7.c1@example.org>",
                headers={"List-Unsubscribe": "<https://t.example.org/u/x>"},
            ),
        ],
    )
    get_transport({"MAIL_TRANSPORT": "outbox", "OUTBOX_DIR": str(tmp_path)}).send_batch(batch)

    files = sorted(tmp_path.glob("*.eml"))
    assert len(files) == 2
    messages = {
        m["To"]: m
        for m in (message_from_bytes(f.read_bytes(), policy=policy.default) for f in files)
    }
    bo = messages["bo@example.org"]
    assert bo["Subject"].startswith("[TEST] ")
    assert bo["Message-ID"] == "<d7.c1@example.org>"
    assert bo["List-Unsubscribe"] == "<https://t.example.org/u/x>"
    html = bo.get_body(("html",)).get_content()
    text = bo.get_body(("plain",)).get_content()
    assert "Bo &amp; &lt;Co&gt;" in html
    assert "<Co>" not in html
    assert "Bo & <Co>" in text
    assert "-rp" not in html + text  # every placeholder substituted
    assert not list(tmp_path.glob("*.tmp"))
