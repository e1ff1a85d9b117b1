"""Signing in to the console from a test client: a user made by the service, their link
opened, the password set, the CSRF token read from the page as a browser would."""

from __future__ import annotations

import re

from accounts import service as accounts
from tenancy.models import Tenant

PASSWORD = "洁家家政-2026"
_TOKEN = re.compile(r'name="csrf_token" value="([^"]+)"')


def form_token(html: str) -> str:
    found = _TOKEN.search(html)
    assert found, "the page has no form token"
    return found.group(1)


def sign_in(
    client,
    session,
    tenant: Tenant,
    *,
    role: str = "owner",
    phone: str = "13900139000",
    name: str = "张店长",
    staff_id: int | None = None,
) -> str:
    """Make a user, open their link, set the password; returns the CSRF token of the
    console's pages (the client keeps the cookies)."""
    made = accounts.create_user(
        session=session, tenant=tenant, role=role, name=name, phone=phone, staff_id=staff_id
    )
    session.commit()
    page = client.get(f"/office/welcome/{made.link_token}")
    assert page.status_code == 200, page.text
    fields = {"csrf_token": form_token(page.text)}
    if role != "staff":
        fields |= {"password": PASSWORD, "password_again": PASSWORD}
    done = client.post(f"/office/welcome/{made.link_token}", data=fields, follow_redirects=False)
    assert done.status_code == 303, done.text
    landing = client.get(done.headers["location"])
    if role == "staff":
        return ""
    assert landing.status_code == 200, landing.text
    return form_token(landing.text)
