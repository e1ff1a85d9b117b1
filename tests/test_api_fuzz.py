"""The API against its own OpenAPI document, by schemathesis: every operation, fuzzed.

Each operation gets a bounded number of generated requests, valid and invalid ones, sent
with an API key to the ASGI app on a SQLite file of its own (a company, a customer, a staff
member and a visit with id 1 give the ids something to find). A request fails the test when
the answer is a 5xx, or when its status, content type, headers or body are not what the
document says. Generation is derandomized, so CI sends the same requests on every run, and
Hypothesis keeps no example database (tests/conftest.py sends its other files to a
temporary directory). The provider webhooks are fuzzed too: unsigned, they must answer
their documented 400/403/404. The key the fuzz sends must keep working (a fuzzed
DELETE /v1/api-keys/1 is undone), or every later request would test only the 401.
"""

from __future__ import annotations

import datetime as dt
from collections import Counter
from collections.abc import Iterator

import pytest
import schemathesis
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)
from sqlalchemy import update

from customers import service as customers
from huifang.app import create_app
from huifang.db import Database
from huifang.migrate import upgrade
from tenancy.models import ApiKey
from tests.conftest import make_account
from visits import service as visits

# Per operation, on top of the examples and boundary cases schemathesis derives from the
# document; the whole module stays well under four minutes on two cores.
EXAMPLES_PER_OPERATION = 25
CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
]

# A resumable upload's pieces (tus) are raw bytes under their own media type.
schemathesis.serializer.alias("application/offset+octet-stream", "application/octet-stream")

app = create_app()
schema = schemathesis.openapi.from_asgi("/openapi.json", app)
schema.config.generation.update(
    max_examples=EXAMPLES_PER_OPERATION, deterministic=True, database="none"
)
sent: Counter[str] = Counter()


@pytest.fixture(scope="module")
def api_key_headers(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, str]]:
    """A company with an API key, a customer, a staff member and a visit."""
    url = f"sqlite:///{tmp_path_factory.mktemp('fuzz') / 'huifang.db'}"
    upgrade(url)
    database = Database(url)
    app.state.database = database
    with database.session() as session:
        account = make_account(session)
        customer = customers.create_customer(
            session=session, tenant=account.tenant, name="王女士", phone="13800138000"
        )
        staff = visits.create_staff(session=session, tenant=account.tenant, name="李阿姨")
        visits.create_visit(
            session=session,
            tenant=account.tenant,
            customer_id=customer.id,
            staff_id=staff.id,
            service_type="ac_cleaning",
            areas=["客厅"],
            finished_at=dt.datetime.now(dt.UTC),
        )
    yield account.headers
    app.state.database = None
    database.dispose()
    print(f"\nschemathesis: {sum(sent.values())} requests over {len(sent)} operations")


def _keep_key(database: Database) -> None:
    """Undo a fuzzed DELETE /v1/api-keys/{id} that revoked the key the fuzz runs with."""
    with database.session() as session:
        session.execute(update(ApiKey).values(revoked_at=None))


@schema.parametrize()
def test_every_answer_is_documented_and_none_is_a_server_error(case, api_key_headers):
    sent[case.operation.label] += 1
    try:
        response = case.call_and_validate(headers=api_key_headers, checks=CHECKS)
    finally:
        if case.operation.path.startswith("/v1/api-keys/"):
            _keep_key(app.state.database)
    # Our key refused means every later request tests nothing but the 401.
    sent_key = response.request.headers.get("authorization") == api_key_headers["Authorization"]
    assert not (sent_key and response.status_code == 401), response.text
