"""Routes the settings screen calls: the keyword tester and the provider's setup."""

from __future__ import annotations

from fastapi import APIRouter

from access.roles import Permission
from huifang.deps import SessionDep, TenantDep, key_may
from messaging import keyword_tester, keywords, provider_setup
from messaging.schemas import KeywordTest, KeywordTestRead, ProviderSetupRead

router = APIRouter(tags=["replies"])


@router.post("/keyword-rules/test", response_model=KeywordTestRead)
def test_keywords(body: KeywordTest, session: SessionDep, tenant: TenantDep) -> KeywordTestRead:
    """Where a reply would be routed (the code real replies go through, with the company's
    rules and optionally one not yet saved) and what would happen. Nothing is recorded."""
    proposed = (
        keywords.Rule(
            name="proposed",
            route=body.proposed.route,
            kind=body.proposed.kind,
            value=body.proposed.value,
        )
        if body.proposed is not None
        else None
    )
    return KeywordTestRead.model_validate(
        keyword_tester.test_reply(session=session, tenant=tenant, text=body.text, proposed=proposed)
    )


@router.get(
    "/provider",
    response_model=ProviderSetupRead,
    tags=["tenant"],
    dependencies=[key_may(Permission.SETTINGS)],
)
def read_provider(tenant: TenantDep) -> ProviderSetupRead:
    """The SMS provider, whether its settings are present, and the addresses to paste into
    its console (read-only: the provider is set in the environment). Owners' keys only:
    the Aliyun addresses are secrets."""
    return ProviderSetupRead.model_validate(provider_setup.provider_setup(tenant=tenant))
