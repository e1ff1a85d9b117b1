"""Campaigns home-service companies run every year, ready to start in one call.

Each preset carries its rule, who it is for, and copy that passes ``campaigns.lint``
(the tests lint and render every one): no topics providers refuse, no 【】 of its own (the
【signature】 is put in front when sending), no opt-out footer of its own (the gate appends
the company's, so a company using 拒收请回复R does not get two), and only our own links.
The SMS text is also the fallback when an MMS cannot be delivered.
"""

from __future__ import annotations

from dataclasses import dataclass

from campaigns.rules import Anniversary, Cadence, LunarOffset, PlumRainOffset, Rule
from campaigns.templating import Category
from huifang.errors import Invalid


@dataclass(frozen=True)
class MmsVariant:
    """The richer message for phones that take MMS (Aliyun 数字短信, Twilio MMS)."""

    subject: str
    body: str
    image_hint: str  # what picture to attach: the company's own photo, never a QR code


@dataclass(frozen=True)
class Preset:
    name: str
    title: str
    description: str
    rule: Rule
    # Audience hints: the service types the rule is about (empty: every customer served at
    # least once), and the regions it makes sense in (empty: everywhere).
    service_types: tuple[str, ...]
    regions: tuple[str, ...]
    audience: str
    category: Category
    sms_body: str
    mms: MmsVariant


PRESETS: dict[str, Preset] = {
    p.name: p
    for p in (
        Preset(
            name="ac_filter_quarterly",
            title="空调滤网季度清洗",
            description="A reminder every 90 days after a customer's last air-conditioner "
            "cleaning; "
            "sent up to 14 days late, otherwise it waits for the next quarter.",
            rule=Cadence("ac_cleaning", every_days=90, catch_up_days=14),
            service_types=("ac_cleaning",),
            regions=(),
            audience="Customers who had 空调清洗; each is reminded three months after their "
            "last one.",
            category="marketing",
            sms_body=(
                "{{ customer_name }}您好，空调滤网建议每三个月清洗一次，积尘会让制冷变慢、"
                "耗电增加，也影响室内空气。现在可以预约上门清洗：{{ booking_link }}"
            ),
            mms=MmsVariant(
                subject="空调滤网该清洗了",
                body=(
                    "{{ customer_name }}您好：\n空调滤网建议每三个月清洗一次。滤网积尘后制冷"
                    "变慢、耗电增加，出风也不够清爽。{{ company }}提供上门拆洗滤网、清洁蒸发器"
                    "和出风口。\n预约上门：{{ booking_link }}"
                ),
                image_hint="A filter before and after cleaning, from the company's own visit "
                "photos.",
            ),
        ),
        Preset(
            name="plum_rain_mould",
            title="梅雨季前除湿防霉",
            description="Seven days before 入梅 each year (the company's regional table, or the "
            "almanac rule where the table has no date): dehumidifying and mould "
            "prevention.",
            rule=PlumRainOffset(offset_days=-7),
            service_types=("mould_prevention", "ac_cleaning", "deep_cleaning"),
            regions=("上海", "江苏", "浙江", "安徽", "江西", "湖北"),
            audience="Customers in the plum-rain regions of the Yangtze valley; those who had "
            "除湿防霉 before are the likeliest to book.",
            category="marketing",
            sms_body=(
                "{{ customer_name }}您好，梅雨季快到了，连续阴雨时室内湿度高，衣柜、墙角和空调"
                "内部容易发霉。入梅前做一次除湿防霉和空调清洁，雨季更安心。预约上门："
                "{{ booking_link }}"
            ),
            mms=MmsVariant(
                subject="入梅前防霉提醒",
                body=(
                    "{{ customer_name }}您好：\n梅雨季快到了。连续阴雨时室内湿度常在80%以上，"
                    "衣柜、墙角、卫生间和空调内部最容易发霉。入梅前做一次除湿防霉和空调清洁，"
                    "雨季更安心。\n预约上门：{{ booking_link }}"
                ),
                image_hint="A dry, tidy wardrobe corner, or a mould-free bathroom corner after a "
                "visit.",
            ),
        ),
        Preset(
            name="spring_festival_deep_clean",
            title="春节前深度保洁",
            description="Twenty days before Spring Festival each year, while there are still "
            "free slots before the holiday rush.",
            rule=LunarOffset("春节", offset_days=-20),
            service_types=("deep_cleaning", "basic_cleaning"),
            regions=(),
            audience="Every customer; those who booked 深度保洁 before last Spring Festival first.",
            category="marketing",
            sms_body=(
                "{{ customer_name }}您好，春节临近，年前是保洁预约最集中的时候，建议提早安排"
                "深度保洁：厨房油污、门窗玻璃和卫生间一次打理干净，安心过年。预约上门："
                "{{ booking_link }}"
            ),
            mms=MmsVariant(
                subject="年前深度保洁提早约",
                body=(
                    "{{ customer_name }}您好：\n春节临近，年前是保洁预约最集中的时候。"
                    "{{ company }}的深度保洁包括厨房油污、门窗玻璃、卫生间除垢和全屋除尘，"
                    "建议提早安排时间，安心过年。\n预约上门：{{ booking_link }}"
                ),
                image_hint="A clean kitchen after a deep cleaning, from the company's own visit "
                "photos.",
            ),
        ),
        Preset(
            name="curtain_biennial",
            title="窗帘两年一洗",
            description="Every two years after a customer's last curtain washing; sent up to 30 "
            "days late.",
            rule=Cadence("curtain_washing", every_days=730, catch_up_days=30),
            service_types=("curtain_washing",),
            regions=(),
            audience="Customers who had 窗帘清洗; each is reminded two years after their last one.",
            category="marketing",
            sms_body=(
                "{{ customer_name }}您好，窗帘建议约两年清洗一次，日积月累的灰尘会在拉动时散落"
                "到室内。我们提供上门拆装、清洗和挂回。预约：{{ booking_link }}"
            ),
            mms=MmsVariant(
                subject="窗帘清洗提醒",
                body=(
                    "{{ customer_name }}您好：\n窗帘建议约两年清洗一次。布料会吸附灰尘和油烟，"
                    "拉动时又散落到室内。{{ company }}提供上门拆装、分类清洗和挂回，当天即可"
                    "完成。\n预约：{{ booking_link }}"
                ),
                image_hint="Curtains being rehung after washing.",
            ),
        ),
        Preset(
            name="yearly_checkin",
            title="服务周年问候",
            description="Each year on the date of the customer's first service: a short thank-you "
            "with the booking link.",
            rule=Anniversary(),
            service_types=(),
            regions=(),
            audience="Every customer served at least once, on the anniversary of their first "
            "service.",
            category="marketing",
            sms_body=(
                "{{ customer_name }}您好，今天是{{ company }}第一次上门为您服务的纪念日，感谢您"
                "一直以来的信任。{% if staff_name is defined %}{{ staff_name }}也向您问好。"
                "{% endif %}家中如有需要清洁或养护的地方，欢迎随时预约：{{ booking_link }}"
            ),
            mms=MmsVariant(
                subject="感谢一路相伴",
                body=(
                    "{{ customer_name }}您好：\n今天是{{ company }}第一次上门为您服务的纪念日，"
                    "感谢您一直以来的信任。\n{% if staff_name is defined %}{{ staff_name }}"
                    "也向您问好。{% endif %}家中如有需要清洁或养护的地方，欢迎随时预约："
                    "{{ booking_link }}"
                ),
                image_hint="The team or the staff member who served the customer, smiling.",
            ),
        ),
    )
}


def get_preset(name: str) -> Preset:
    """The preset called ``name``; Invalid listing the presets when there is none."""
    preset = PRESETS.get(name.strip()) if isinstance(name, str) else None
    if preset is None:
        raise Invalid(f"There is no preset {name!r}; choose one of: {', '.join(PRESETS)}.")
    return preset
