from __future__ import annotations

from fastapi import APIRouter

from access.roles import Permission
from huifang.deps import KeyActorDep, SessionDep, TenantDep, key_may
from huifang.fields import Id
from huifang.settings import get_settings
from tenancy import service
from tenancy.models import Tenant
from tenancy.schemas import ApiKeyCreate, ApiKeyCreated, ApiKeyRead, TenantRead, TenantUpdate

router = APIRouter(tags=["tenant"])


def _read(tenant: Tenant) -> TenantRead:
    base = f"{get_settings().public_url}/hooks/aliyun/{service.hook_key(tenant.id)}"
    read = TenantRead.model_validate(tenant)
    read.webhooks = {"aliyun_report": f"{base}/report", "aliyun_reply": f"{base}/reply"}
    return read


@router.get("/tenant", response_model=TenantRead)
def read_tenant(tenant: TenantDep) -> TenantRead:
    """The company this API key belongs to, with its webhook addresses."""
    return _read(tenant)


@router.patch("/tenant", response_model=TenantRead, dependencies=[key_may(Permission.SETTINGS)])
def update_tenant(
    body: TenantUpdate, session: SessionDep, tenant: TenantDep, actor: KeyActorDep
) -> TenantRead:
    """Change the company's settings (name, signature, time zone, working hours and slots,
    clip length cap, report validity); the change is in the audit log."""
    service.update_tenant(session=session, tenant=tenant, changes=body, actor=actor)
    return _read(tenant)


@router.get("/api-keys", response_model=list[ApiKeyRead], dependencies=[key_may(Permission.KEYS)])
def list_keys(session: SessionDep, tenant: TenantDep) -> list[ApiKeyRead]:
    return [
        ApiKeyRead.model_validate(k)
        for k in service.list_api_keys(session=session, tenant_id=tenant.id)
    ]


@router.post(
    "/api-keys",
    response_model=ApiKeyCreated,
    status_code=201,
    dependencies=[key_may(Permission.KEYS)],
)
def create_key(body: ApiKeyCreate, session: SessionDep, tenant: TenantDep) -> ApiKeyCreated:
    """A new key. The answer is the only place the key is ever shown."""
    row, key = service.create_api_key(
        session=session, tenant=tenant, name=body.name, role=body.role
    )
    return ApiKeyCreated(**ApiKeyRead.model_validate(row).model_dump(), key=key)


@router.delete(
    "/api-keys/{key_id}", response_model=ApiKeyRead, dependencies=[key_may(Permission.KEYS)]
)
def revoke_key(key_id: Id, session: SessionDep, tenant: TenantDep) -> ApiKeyRead:
    """Revoke a key; requests made with it are refused from now on."""
    return ApiKeyRead.model_validate(
        service.revoke_api_key(session=session, tenant_id=tenant.id, key_id=key_id)
    )
