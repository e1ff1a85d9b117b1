"""Charts for the campaign screen: server-rendered SVG, readable without JavaScript.

The one module that knows pygal. Each chart is plain SVG text with Chinese labels: no
script (pygal's tooltips load one from a CDN, so ``js`` is empty), no web font (a font
stack of fonts that ship with the systems the office uses, ending in ``sans-serif``), no
external reference. A ``<title>`` and ``<desc>`` give screen readers the figures, and the
values are printed on the chart, so nothing depends on hovering.
"""

from __future__ import annotations

import re

import pygal
from pygal.style import Style

from campaigns.figures import CompanyTrend, WeeklyResults

FONTS = ("'Noto Sans CJK SC', 'Noto Sans SC', 'Source Han Sans SC', 'PingFang SC', "
         "'Hiragino Sans GB', 'Microsoft YaHei', 'WenQuanYi Micro Hei', sans-serif")
# Colours told apart by people with the common colour-vision deficiencies (Okabe–Ito).
COLOURS = ("#0072B2", "#009E73", "#E69F00", "#CC79A7", "#D55E00")
WEEKLY_LABELS = {"sent": "已发送", "delivered": "已送达", "clicked": "点击",
                 "booked": "预约", "opted_out": "退订"}
TREND_LABELS = {"retention_rate": "留存率", "second_service_conversion": "二次服务转化率",
                "repeat_purchase_rate": "复购率"}

# pygal writes its config as an inline script even with no scripts to load: not wanted.
_SCRIPT = re.compile(r"<script\b[^>]*>.*?</script>", re.DOTALL)
_COMMENT = re.compile(r"<!--.*?-->", re.DOTALL)

_STYLE = Style(
    font_family=FONTS, background="#ffffff", plot_background="#ffffff",
    foreground="#222222", foreground_strong="#111111", foreground_subtle="#666666",
    colors=COLOURS, label_font_size=13, major_label_font_size=13, legend_font_size=14,
    title_font_size=16, value_font_size=12, tooltip_font_size=12, opacity="1",
    opacity_hover="1", transition="0s")


def _config(title: str, width: int, height: int) -> dict[str, object]:
    return {"title": title, "width": width, "height": height, "style": _STYLE, "js": [],
            "disable_xml_declaration": True, "explicit_size": False, "legend_at_bottom": True,
            "legend_at_bottom_columns": 3, "print_values": True, "print_zeroes": False,
            "no_data_text": "暂无数据", "show_y_guides": True, "truncate_label": -1,
            "x_label_rotation": 0, "margin": 12}


def _svg(chart: pygal.graph.graph.Graph, description: str) -> str:
    text = _COMMENT.sub("", _SCRIPT.sub("", str(chart.render(is_unicode=True))))
    # pygal titles the SVG with the chart's title; a description lists the figures too.
    return text.replace("</title>", f"</title><desc>{_escape(description)}</desc>", 1)


def _escape(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def weekly(results: WeeklyResults, *, width: int = 800, height: int = 360) -> str:
    """Grouped bars per week: sent, delivered, clicked, booked, opted out."""
    chart = pygal.Bar(**_config(f"{results.name}：每周结果", width, height))
    chart.x_labels = [f"{w.start.month}月{w.start.day}日" for w in results.weeks]
    lines = []
    for key, label in WEEKLY_LABELS.items():
        values = [getattr(w, key) for w in results.weeks]
        chart.add(label, values)
        lines.append(f"{label}：{'，'.join(str(v) for v in values)}")
    return _svg(chart, "每周一起算。" + "；".join(lines) + "。")


def trend(found: CompanyTrend, *, width: int = 800, height: int = 360) -> str:
    """Lines month by month: retention, second-service conversion, repeat purchases (%)."""
    chart = pygal.Line(**_config(f"公司留存与二次服务转化（近{found.window_days}天，%）", width,
                                 height), range=(0, 100), value_formatter=_percent,
                       allow_interruptions=True, dots_size=4)
    chart.x_labels = [f"{p.month.year}年{p.month.month}月" for p in found.points]
    lines = []
    for key, label in TREND_LABELS.items():
        values = [getattr(p, key) for p in found.points]
        chart.add(label, values)
        shown = "，".join(_percent(v) if v is not None else "无" for v in values)
        lines.append(f"{label}：{shown}")
    return _svg(chart, "；".join(lines) + "。")


def _percent(value: float | None) -> str:
    return "" if value is None else f"{value:g}%"
