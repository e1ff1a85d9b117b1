"""今日 and 回复与预约 pages through a test client: who may see them, what they show, and
what a person's answers do (and refuse, in Chinese, keeping what was typed)."""

from __future__ import annotations

import re

import pytest
from sqlalchemy import func, select

from bookings.models import CONFIRMED, DECLINED
from compliance import service as compliance
from huifang.db import utcnow
from messaging.models import HANDLED, OPEN, Message
from tests.conftest import make_account
from tests.office.desk_data import make_day
from tests.office.support import form_token, sign_in
from visits.models import Visit


@pytest.fixture
def tenant(session):
    return make_account(session).tenant


@pytest.fixture
def day(session, tenant):
    return make_day(session, tenant)


def _answers(session, tenant):
    return session.scalar(
        select(func.count())
        .select_from(Message)
        .where(Message.tenant_id == tenant.id, Message.source_type == "office_answer")
    )


def test_today_shows_what_waits_with_clocks_and_links(client, session, tenant, day):
    sign_in(client, session, tenant, role="office", name="客服小李")
    page = client.get("/office/today")
    assert page.status_code == 200
    text = page.text
    assert 'data-poll="/office/today/panel"' in text and 'data-every="20"' in text
    assert re.search(r'id="count-bookings">2<', text)
    assert re.search(r'id="count-tickets">1<', text)
    assert re.search(r'id="count-replies">1<', text)
    # The complaint waited 3 hours against a 2-hour target: marked overdue, linked to its thread.
    assert f'href="/office/inbox/threads/{day.wang.id}#reply-{day.complaint.id}"' in text
    assert "阿姨没擦干净" in text and "已超时" in text and "还没有指派跟进人" in text
    assert f'href="/office/inbox/bookings#booking-{day.first.id}"' in text
    assert "赵阿姨" in text and "空调清洗" in text
    assert f"/office/inbox/threads/{day.li.id}#reply-{day.question.id}" in text
    assert "今天和明天没有要发的营销短信" in text
    panel = client.get("/office/today/panel")
    assert panel.status_code == 200 and "<html" not in panel.text
    assert re.search(r'id="count-bookings">2<', panel.text)
    assert panel.headers["cache-control"] == "no-store"


def test_staff_cannot_open_the_desk_pages(client, session, tenant, day):
    sign_in(
        client,
        session,
        tenant,
        role="staff",
        name="张阿姨",
        phone="13900139005",
        staff_id=day.zhang.id,
    )
    for url in (
        "/office/today",
        "/office/today/panel",
        "/office/inbox",
        f"/office/inbox/threads/{day.wang.id}",
        "/office/inbox/bookings",
    ):
        page = client.get(url, follow_redirects=False)
        assert page.status_code == 403, url
        assert "没有权限" in page.text


def test_signed_out_pages_ask_to_sign_in(client, session, tenant, day):
    page = client.get("/office/inbox/bookings", follow_redirects=False)
    assert page.status_code == 303 and page.headers["location"].startswith("/office/login")


def test_threads_open_first_filtered_and_found_by_name_or_phone(client, session, tenant, day):
    sign_in(client, session, tenant, role="office")
    day.question.state = HANDLED
    session.commit()
    page = client.get("/office/inbox").text
    # 王女士 (an open complaint) comes before 李先生 (answered), though 李先生 wrote last.
    assert page.index("王女士") < page.index("李先生")
    open_only = client.get("/office/inbox?show=open").text
    assert "王女士" in open_only and "李先生" not in open_only
    by_phone = client.get("/office/inbox?q=138-0013-8001").text
    assert "李先生" in by_phone and "王女士" not in by_phone
    by_name = client.get("/office/inbox", params={"q": "王"}).text
    assert "王女士" in by_name and "李先生" not in by_name
    nothing = client.get("/office/inbox", params={"q": "孙"})
    assert nothing.status_code == 200 and "没有找到“孙”的回复" in nothing.text


def test_a_complaint_is_answered_assigned_and_resolved(client, session, tenant, day):
    token = sign_in(client, session, tenant, role="office", name="客服小李")
    url = f"/office/inbox/threads/{day.wang.id}"
    page = client.get(url)
    assert page.status_code == 200
    assert "投诉词“没擦干净”" in page.text
    assert "需要人工处理" in page.text and "已超时" in page.text
    request_id = re.search(r'name="request_id" value="([^"]+)"', page.text).group(1)
    answer = {
        "csrf_token": token,
        "body": "非常抱歉，明天上午安排返工。",
        "reply_id": str(day.complaint.id),
        "category": "service",
        "request_id": request_id,
    }
    sent = client.post(f"{url}/answer", data=answer, follow_redirects=False)
    assert sent.status_code == 303, sent.text
    assert sent.headers["location"].startswith(f"{url}?answered=")
    again = client.post(f"{url}/answer", data=answer, follow_redirects=False)
    assert again.status_code == 303 and _answers(session, tenant) == 1  # a form sent twice: once
    shown = client.get(sent.headers["location"]).text
    assert "非常抱歉，明天上午安排返工。" in shown and "客服回复" in shown
    session.refresh(day.complaint)
    assert day.complaint.first_response_at is not None and day.complaint.state == OPEN

    users = re.findall(r'<option value="(\d+)"[^>]*>客服小李</option>', shown)
    assert users, "the signed-in clerk is offered as assignee"
    assigned = client.post(
        f"/office/inbox/replies/{day.complaint.id}/assign",
        data={"csrf_token": token, "assignee_id": users[0]},
        follow_redirects=False,
    )
    assert assigned.status_code == 303
    assert assigned.headers["location"] == f"{url}#reply-{day.complaint.id}"
    assert "跟进人：客服小李" in client.get(url).text

    empty = client.post(
        f"/office/inbox/replies/{day.complaint.id}/resolve",
        data={"csrf_token": token, "resolution": "  "},
    )
    assert empty.status_code == 422 and "请写一句处理结果" in empty.text
    done = client.post(
        f"/office/inbox/replies/{day.complaint.id}/resolve",
        data={"csrf_token": token, "resolution": "已上门返工，客户满意"},
        follow_redirects=False,
    )
    assert done.status_code == 303
    page = client.get(url).text
    assert "已上门返工，客户满意" in page and "重新打开" in page
    twice = client.post(
        f"/office/inbox/replies/{day.complaint.id}/resolve",
        data={"csrf_token": token, "resolution": "再补一句"},
    )
    assert twice.status_code == 409 and "已经处理完毕" in twice.text
    assert "再补一句" in twice.text  # what was typed is still in the form
    reopened = client.post(
        f"/office/inbox/replies/{day.complaint.id}/reopen",
        data={"csrf_token": token},
        follow_redirects=False,
    )
    assert reopened.status_code == 303
    session.refresh(day.complaint)
    assert day.complaint.state == OPEN and day.complaint.resolved_at is None


def test_a_refused_answer_says_why_and_keeps_the_text(client, session, tenant, day):
    token = sign_in(client, session, tenant, role="office")
    url = f"/office/inbox/threads/{day.wang.id}"
    offer = client.post(
        f"{url}/answer",
        data={
            "csrf_token": token,
            "body": "冬季保洁八折，回复1预约",
            "category": "marketing",
            "reply_id": str(day.complaint.id),
        },
    )
    assert offer.status_code == 409
    assert "客户没有同意接收营销短信" in offer.text
    assert "冬季保洁八折，回复1预约</textarea>" in offer.text
    assert 'value="marketing" checked' in offer.text
    compliance.opt_out(
        session=session,
        tenant=tenant,
        phone=day.wang.phone,
        reason="reply_opt_out",
        detail="T",
        now=utcnow(),
    )
    session.commit()
    assert "客户已退订" in client.get(url).text  # said before anyone types
    stopped = client.post(f"{url}/answer", data={"csrf_token": token, "body": "您好，回访一下"})
    assert stopped.status_code == 409 and "客户已退订" in stopped.text
    assert "您好，回访一下</textarea>" in stopped.text
    empty = client.post(f"{url}/answer", data={"csrf_token": token, "body": " "})
    assert empty.status_code == 422 and "请写下要发给客户的内容" in empty.text
    assert _answers(session, tenant) == 0


def test_forms_without_the_token_are_refused(client, session, tenant, day):
    sign_in(client, session, tenant, role="office")
    refused = client.post(f"/office/inbox/threads/{day.wang.id}/answer", data={"body": "您好"})
    assert refused.status_code == 403 and "页面已过期" in refused.text
    wrong = client.post(
        f"/office/inbox/bookings/{day.first.id}/decline",
        data={"csrf_token": "forged", "reason": "排满了"},
    )
    assert wrong.status_code == 403
    assert _answers(session, tenant) == 0
    session.refresh(day.first)
    assert day.first.status == "requested"


def test_another_companys_thread_is_not_found(client, session, tenant, day):
    other = make_account(session).tenant
    sign_in(client, session, other, role="office", phone="13900139009")
    page = client.get(f"/office/inbox/threads/{day.wang.id}")
    assert page.status_code == 404 and "没有这位客户" in page.text
    token = form_token(client.get("/office/inbox").text)
    resolve = client.post(
        f"/office/inbox/replies/{day.complaint.id}/resolve",
        data={"csrf_token": token, "resolution": "x"},
    )
    assert resolve.status_code == 404


def test_bookings_are_confirmed_with_a_free_staff_member_or_declined(client, session, tenant, day):
    token = sign_in(client, session, tenant, role="office")
    page = client.get("/office/inbox/bookings")
    assert page.status_code == 200
    text = page.text
    assert f'id="booking-{day.first.id}"' in text and "请带梯子" in text
    assert '预约 <span class="badge warn">2</span>' in text  # the tab says how many wait
    assert '客户回复 <span class="badge warn">2</span>' in text
    chosen = re.search(
        rf'id="time-{day.first.id}".*?<option value="([^"]+)"[^>]*selected', text, re.S
    ).group(1)
    assert chosen.startswith(day.first.slot_start.isoformat()[:16])  # the customer's time
    assert "张阿姨（有空）" in text
    missing = client.post(
        f"/office/inbox/bookings/{day.first.id}/confirm",
        data={"csrf_token": token, "slot_start": chosen},
    )
    assert missing.status_code == 422 and "请选择一位服务人员" in missing.text
    # 张阿姨 goes to 李先生 first at that time: for 赵阿姨's booking she is busy then.
    from visits import service as visits

    visits.create_visit(
        session=session,
        tenant=tenant,
        customer_id=day.li.id,
        service_type="deep_cleaning",
        staff_id=day.zhang.id,
        scheduled_at=day.first.slot_start,
    )
    session.commit()
    checked = client.post(
        f"/office/inbox/bookings/{day.first.id}/staff",
        data={"csrf_token": token, "slot_start": chosen},
    )
    assert checked.status_code == 200
    assert re.search(rf'value="{day.zhang.id}"[^>]*disabled', checked.text)
    busy = client.post(
        f"/office/inbox/bookings/{day.first.id}/confirm",
        data={"csrf_token": token, "slot_start": chosen, "staff_id": str(day.zhang.id)},
    )
    assert busy.status_code == 409 and "张阿姨" in busy.text and "已有上门" in busy.text
    done = client.post(
        f"/office/inbox/bookings/{day.first.id}/confirm",
        data={"csrf_token": token, "slot_start": chosen, "staff_id": str(day.chen.id)},
        follow_redirects=False,
    )
    assert done.status_code == 303, done.text
    session.refresh(day.first)
    assert day.first.status == CONFIRMED and day.first.staff_id == day.chen.id
    visit = session.get(Visit, day.first.visit_id)
    assert visit is not None and visit.staff_id == day.chen.id
    after = client.get(done.headers["location"]).text
    assert f"已生成上门记录 #{visit.id}" in after and "陈师傅" in after and "已确认" in after
    assert f'id="booking-{day.first.id}"' not in after

    no_reason = client.post(
        f"/office/inbox/bookings/{day.second.id}/decline", data={"csrf_token": token, "reason": " "}
    )
    assert no_reason.status_code == 422 and "请写明婉拒的原因" in no_reason.text
    brackets = client.post(
        f"/office/inbox/bookings/{day.second.id}/decline",
        data={"csrf_token": token, "reason": "【满】这周排满了"},
    )
    assert brackets.status_code == 422 and "【满】这周排满了</textarea>" in brackets.text
    declined = client.post(
        f"/office/inbox/bookings/{day.second.id}/decline",
        data={"csrf_token": token, "reason": "师傅这周已排满"},
        follow_redirects=False,
    )
    assert declined.status_code == 303
    session.refresh(day.second)
    assert day.second.status == DECLINED
    after = client.get(declined.headers["location"]).text
    assert "已婉拒" in after and "原因：师傅这周已排满" in after
    assert "没有待确认的预约" in after
    gone = client.post(
        "/office/inbox/bookings/999999999/decline", data={"csrf_token": token, "reason": "排满了"}
    )
    assert gone.status_code == 404 and "找不到这个预约" in gone.text
    nobody = client.post(
        f"/office/inbox/threads/{day.wang.id}/answer",
        data={"csrf_token": token, "body": "您好", "reply_id": "999999999"},
    )
    assert nobody.status_code == 404 and "找不到要回复的这条消息" in nobody.text
    late = client.post(
        f"/office/inbox/bookings/{day.second.id}/confirm",
        data={"csrf_token": token, "slot_start": chosen, "staff_id": str(day.chen.id)},
    )
    assert late.status_code == 409 and "已经婉拒" in late.text


def test_a_reply_booking_is_confirmed_with_a_time_and_a_service(client, session, tenant, day):
    from bookings.models import Booking
    from tests.office.desk_data import reply

    token = sign_in(client, session, tenant, role="office")
    reply(session, tenant, day.wang, "1", "one-1", utcnow())
    asked = session.scalar(select(Booking).where(Booking.customer_id == day.wang.id))
    assert asked is not None and asked.slot_start is None
    session.commit()
    page = client.get("/office/inbox/bookings").text
    card = page[page.index(f'id="booking-{asked.id}"') :]
    card = card[: card.index("</section>")]
    assert "没有选时间" in card and f'id="service-{asked.id}"' in card
    assert re.search(r'<option value=""[^>]*selected>请选择时间', card)
    slot = re.findall(r'<option value="(\d{4}-[^"]+)" data-free="([\d,]*)"', card)[3][0]
    needs = client.post(
        f"/office/inbox/bookings/{asked.id}/confirm",
        data={
            "csrf_token": token,
            "slot_start": slot,
            "staff_id": str(day.chen.id),
            "service_type": "",
        },
    )
    assert needs.status_code == 422 and "请选择服务类型" in needs.text
    done = client.post(
        f"/office/inbox/bookings/{asked.id}/confirm",
        data={
            "csrf_token": token,
            "slot_start": slot,
            "staff_id": str(day.chen.id),
            "service_type": "sofa_care",
        },
        follow_redirects=False,
    )
    assert done.status_code == 303, done.text
    session.refresh(asked)
    visit = session.get(Visit, asked.visit_id)
    assert visit is not None and visit.service_type == "sofa_care"
    assert "沙发护理" in client.get(done.headers["location"]).text


def test_the_office_proposes_another_time_the_customer_accepts_on_their_page(
    client, session, tenant, day
):
    from bookings import links
    from bookings.models import PROPOSED, Booking

    token = sign_in(client, session, tenant, role="office")
    page = client.get("/office/inbox/bookings").text
    card = page[page.index(f'id="booking-{day.first.id}"') :]
    card = card[: card.index("</section>")]
    assert 'name="intent" value="propose"' in card
    other = re.findall(r'<option value="(\d{4}-[^"]+)" data-free="([\d,]*)"', card)[5][0]
    proposed = client.post(
        f"/office/inbox/bookings/{day.first.id}/confirm",
        data={
            "csrf_token": token,
            "slot_start": other,
            "staff_id": str(day.chen.id),
            "intent": "propose",
        },
        follow_redirects=False,
    )
    assert proposed.status_code == 303, proposed.text
    session.refresh(day.first)
    assert (day.first.status, day.first.staff_id) == (PROPOSED, day.chen.id)
    assert day.first.visit_id is None
    after = client.get(proposed.headers["location"]).text
    assert "已建议新时间，等客户确认" in after and "陈师傅" in after
    told = session.scalars(
        select(Message).where(
            Message.tenant_id == tenant.id, Message.source_type == "booking_proposed"
        )
    ).one()
    assert "建议改为" in told.body and "陈师傅" in told.body and "/b/" in told.body

    # The customer opens the link in the message and accepts.
    link = session.get(links.ShortLink, day.first.open_link_id)
    assert link is not None and f"/b/{link.token}" in told.body
    accepted = client.post(f"/b/{link.token}", data={"action": "accept"})
    assert accepted.status_code == 200 and "已确认，届时上门" in accepted.text
    made = session.get(Booking, day.first.id)
    session.refresh(made)
    assert made.status == CONFIRMED and made.visit_id is not None
    assert session.get(Visit, made.visit_id).staff_id == day.chen.id
