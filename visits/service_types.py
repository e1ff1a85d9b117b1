"""The services home-service companies sell, as codes with the words customers see.

Companies may use their own codes too; these are the ones campaigns and care advice know.
"""

from __future__ import annotations

SERVICE_TYPES: dict[str, str] = {
    "basic_cleaning": "日常保洁",
    "deep_cleaning": "深度保洁",
    "move_in_cleaning": "开荒保洁",
    "ac_cleaning": "空调清洗",
    "range_hood_cleaning": "油烟机清洗",
    "washing_machine_cleaning": "洗衣机清洗",
    "fridge_cleaning": "冰箱清洗",
    "curtain_washing": "窗帘清洗",
    "sofa_care": "沙发护理",
    "mould_prevention": "除湿防霉",
    "nanny": "保姆服务",
    "elder_care": "养老护理",
}
_BY_LABEL = {label: code for code, label in SERVICE_TYPES.items()}


def normalize_service_type(value: str) -> str:
    """A known code for a known code or its Chinese label; otherwise the text as given."""
    text = value.strip()
    return _BY_LABEL.get(text, text.lower() if text.isascii() else text)


def label(code: str) -> str:
    """The words customers read for a service code."""
    return SERVICE_TYPES.get(code, code)
