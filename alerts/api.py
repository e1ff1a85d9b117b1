"""``/v1/alert-channels`` and the delivery log: owners' keys only (they are settings)."""

from __future__ import annotations

from fastapi import APIRouter, Response

from access.roles import Permission
from alerts import service
from alerts.schemas import ChannelCreate, ChannelRead, DeliveryRead
from huifang.deps import KeyActorDep, SessionDep, TenantDep, key_may
from huifang.fields import Id
from huifang.openapi import refusals

router = APIRouter(tags=["alerts"], dependencies=[key_may(Permission.SETTINGS)])


@router.get("/alert-channels", response_model=list[ChannelRead])
def list_channels(session: SessionDep, tenant: TenantDep) -> list[ChannelRead]:
    return [
        ChannelRead.model_validate(c)
        for c in service.list_channels(session=session, tenant_id=tenant.id)
    ]


@router.post("/alert-channels", response_model=ChannelRead, status_code=201)
def create_channel(
    body: ChannelCreate, session: SessionDep, tenant: TenantDep, actor: KeyActorDep
) -> ChannelRead:
    """A WeCom or DingTalk group robot, or a signed HTTPS webhook, to hear about events."""
    return ChannelRead.model_validate(
        service.create_channel(
            session=session,
            tenant=tenant,
            kind=body.kind,
            name=body.name,
            url=body.url,
            secret=body.secret,
            events=body.events,
            actor=actor,
        )
    )


@router.delete("/alert-channels/{channel_id}", status_code=204)
def delete_channel(
    channel_id: Id, session: SessionDep, tenant: TenantDep, actor: KeyActorDep
) -> Response:
    service.delete_channel(session=session, tenant_id=tenant.id, channel_id=channel_id, actor=actor)
    return Response(status_code=204)


@router.post(
    "/alert-channels/{channel_id}/test",
    status_code=202,
    response_model=None,
    responses=refusals(404),
)
def test_channel(
    channel_id: Id, session: SessionDep, tenant: TenantDep, actor: KeyActorDep
) -> Response:
    """Send a test alert to this channel now; its outcome shows in GET /v1/alerts."""
    service.send_test(session=session, tenant_id=tenant.id, channel_id=channel_id, actor=actor)
    return Response(status_code=202)


@router.get("/alerts", response_model=list[DeliveryRead])
def delivery_log(session: SessionDep, tenant: TenantDep) -> list[DeliveryRead]:
    """The newest 50 deliveries: which alert went to which channel, and how it went."""
    return [
        DeliveryRead(
            id=line.delivery.id,
            alert_id=line.alert.id,
            event=line.alert.event,
            title=line.alert.title,
            channel=line.channel_name,
            status=line.delivery.status,
            attempts=line.delivery.attempts,
            last_error=line.delivery.last_error,
            created_at=line.alert.created_at,
            sent_at=line.delivery.sent_at,
        )
        for line in service.delivery_log(session=session, tenant_id=tenant.id)
    ]
