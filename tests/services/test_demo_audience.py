"""Demo data: two lists and about 200 members with consent, created once."""

from __future__ import annotations

import sqlalchemy as sa

from app import demo
from app.models import MailingList, Member, Subscription


def test_demo_load_is_idempotent_and_realistic(db_session):
    assert demo.load(db_session, admin_email="admin@example.org", admin_password="rallypoint-demo")
    members = db_session.scalars(sa.select(Member)).all()
    assert 190 <= len(members) <= 200
    assert {m.language for m in members} == {"en", "fr"}
    assert all(m.consent_basis for m in members)
    assert any(m.consent_expires_at for m in members)
    names = {lst.name: lst for lst in db_session.scalars(sa.select(MailingList))}
    assert names["Action network"].opt_in == "double"
    assert names["Action network"].is_public
    count = db_session.scalar(sa.select(sa.func.count()).select_from(Subscription))
    assert not demo.load(db_session, admin_email="admin@example.org", admin_password="x")
    assert db_session.scalar(sa.select(sa.func.count()).select_from(Member)) == len(members)
    assert db_session.scalar(sa.select(sa.func.count()).select_from(Subscription)) == count
