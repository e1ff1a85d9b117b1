"""Routes the settings screen calls: the keyword tester and the provider's setup."""

from __future__ import annotations

from fastapi import APIRouter, Response

from access.roles import Permission
from huifang.db import utcnow
from huifang.deps import SessionDep, TenantDep, key_may
from huifang.fields import Id
from huifang.settings import get_settings
from messaging import keyword_tester, keywords, provider_setup, providers, sms_templates
from messaging.schemas import (
    KeywordTest,
    KeywordTestRead,
    ProviderSetupRead,
    SmsTemplateCreate,
    SmsTemplateRead,
    SmsTemplatesRead,
)

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


def _overview(session: SessionDep, tenant: TenantDep) -> SmsTemplatesRead:
    settings = get_settings()
    return SmsTemplatesRead.model_validate(
        sms_templates.overview(
            session=session,
            tenant_id=tenant.id,
            base_url=settings.public_url,
            required=providers.capabilities(settings.sms_provider).approved_templates,
        )
    )


@router.get(
    "/sms-templates",
    response_model=SmsTemplatesRead,
    tags=["tenant"],
    dependencies=[key_may(Permission.WORK)],
)
def read_sms_templates(session: SessionDep, tenant: TenantDep) -> SmsTemplatesRead:
    """The company's approved SMS templates, and each purpose a message can have with whether
    a template is recorded for it and a text to submit for approval (Aliyun sends nothing
    else: a message whose purpose has no template is refused before sending)."""
    return _overview(session, tenant)


@router.post(
    "/sms-templates",
    response_model=SmsTemplateRead,
    status_code=201,
    tags=["tenant"],
    dependencies=[key_may(Permission.SETTINGS)],
)
def create_sms_template(
    body: SmsTemplateCreate, session: SessionDep, tenant: TenantDep
) -> SmsTemplateRead:
    """Record a template the provider approved; 422 with the reasons when Aliyun's rules or
    the purpose's values would not allow it. One per purpose (recording another replaces
    it), several for campaigns."""
    template = sms_templates.record(
        session=session,
        tenant_id=tenant.id,
        company_signature=tenant.signature,
        base_url=get_settings().public_url,
        code=body.code,
        kind=body.kind,
        purpose_code=body.purpose,
        text=body.text,
        signature=body.signature or tenant.signature,
        now=utcnow(),
    )
    read = _overview(session, tenant)
    return next(t for t in read.templates if t.id == template.id)


@router.delete(
    "/sms-templates/{template_id}",
    status_code=204,
    tags=["tenant"],
    dependencies=[key_may(Permission.SETTINGS)],
)
def delete_sms_template(template_id: Id, session: SessionDep, tenant: TenantDep) -> Response:
    """Forget a template (Aliyun deleted it, or it was recorded by mistake)."""
    sms_templates.delete(session=session, tenant_id=tenant.id, template_id=template_id)
    return Response(status_code=204)
