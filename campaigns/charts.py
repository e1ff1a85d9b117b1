"""Charts for the campaign screen: server-rendered SVG, readable without JavaScript.

The one module that knows pygal. Each chart is plain SVG text with Chinese labels: no
script (pygal's tooltips load one from a CDN, so ``js`` is empty), no web font (a font
stack of fonts that ship with the systems the office uses, then ``Huifang CJK``, ending in
``sans-serif``), no external reference. ``Huifang CJK`` is the Noto Sans CJK the media
worker already needs (``media.fonts``): a page that serves it declares it with @font-face,
or ``font_url`` writes that declaration into the SVG itself; a browser fetches it only
for characters no font before it in the stack has (a machine without any Chinese font,
such as a bare Debian running the browser tests). A ``<title>`` and ``<desc>`` give
screen readers the figures, and the values are printed on the chart, so nothing depends
on hovering.
"""

from __future__ import annotations

import math
import re

import pygal
from pygal.style import Style

from campaigns.figures import CompanyTrend, WeeklyResults

FONTS = (
    "'Noto Sans CJK SC', 'Noto Sans SC', 'Source Han Sans SC', 'PingFang SC', "
    "'Hiragino Sans GB', 'Microsoft YaHei', 'WenQuanYi Micro Hei', 'Huifang CJK', sans-serif"
)
# Colours told apart by people with the common colour-vision deficiencies (Okabe–Ito).
COLOURS = ("#0072B2", "#009E73", "#E69F00", "#CC79A7", "#D55E00")
WEEKLY_LABELS = {
    "sent": "已发送",
    "delivered": "已送达",
    "clicked": "点击",
    "booked": "预约",
    "opted_out": "退订",
}
TREND_LABELS = {
    "retention_rate": "留存率",
    "second_service_conversion": "二次服务转化率",
    "repeat_purchase_rate": "复购率",
}

# pygal writes its config as an inline script even with no scripts to load: not wanted.
_SCRIPT = re.compile(r"<script\b[^>]*>.*?</script>", re.DOTALL)
_COMMENT = re.compile(r"<!--.*?-->", re.DOTALL)

_STYLE = Style(
    font_family=FONTS,
    background="#ffffff",
    plot_background="#ffffff",
    foreground="#222222",
    foreground_strong="#111111",
    foreground_subtle="#666666",
    colors=COLOURS,
    label_font_size=13,
    major_label_font_size=13,
    legend_font_size=14,
    title_font_size=16,
    value_font_size=12,
    tooltip_font_size=12,
    opacity="1",
    opacity_hover="1",
    transition="0s",
)


def _config(title: str, width: int, height: int, series: int, points: int) -> dict[str, object]:
    # The legend in one row, or two columns on a phone (with room below: pygal cuts a
    # second row short); room on the sides for the first and last labels, centred on the
    # chart's edges. With many points the values are left to <desc> and the page's table,
    # and every few labels are shown.
    narrow = width < 600
    crowded = points > (4 if narrow else 8)
    return {
        "title": title,
        "width": width,
        "height": height,
        "style": _STYLE,
        "js": [],
        "disable_xml_declaration": True,
        "explicit_size": False,
        "legend_at_bottom": True,
        "legend_at_bottom_columns": min(series, 2) if narrow else series,
        "print_values": not crowded,
        "print_zeroes": False,
        "no_data_text": "暂无数据",
        "show_y_guides": True,
        "truncate_label": -1,
        "x_label_rotation": 0,
        "margin": 12,
        "margin_left": 24,
        "margin_right": 48,
        "margin_bottom": 24 if narrow else 12,
        "show_minor_x_labels": not crowded,
        "x_labels_major_every": max(1, math.ceil(points / (4 if narrow else 6)))
        if crowded
        else None,
    }


def _svg(chart: pygal.graph.graph.Graph, description: str, font_url: str | None) -> str:
    text = _COMMENT.sub("", _SCRIPT.sub("", str(chart.render(is_unicode=True))))
    # pygal titles the SVG with the chart's title; a description lists the figures too.
    text = text.replace("</title>", f"</title><desc>{_escape(description)}</desc>", 1)
    if font_url is not None:
        if not font_url.startswith("/") or any(c in font_url for c in "'\"<>() "):
            raise ValueError("font_url must be a path on this site, without quotes")
        face = (
            f"<style>@font-face{{font-family:'Huifang CJK';src:url('{font_url}');"
            "font-display:swap}</style>"
        )
        text = text.replace("<defs>", "<defs>" + face, 1)
    return text


def _escape(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def weekly(
    results: WeeklyResults, *, width: int = 800, height: int = 360, font_url: str | None = None
) -> str:
    """Grouped bars per week: sent, delivered, clicked, booked, opted out."""
    chart = pygal.Bar(
        **_config(
            f"{results.name}：每周结果", width, height, len(WEEKLY_LABELS), len(results.weeks)
        )
    )
    chart.x_labels = [f"{w.start.month}月{w.start.day}日" for w in results.weeks]
    if not chart.config.show_minor_x_labels:  # pygal's bars ignore x_labels_major_every
        every = chart.config.x_labels_major_every
        chart.x_labels_major = chart.x_labels[::every]
    lines = []
    for key, label in WEEKLY_LABELS.items():
        values = [getattr(w, key) for w in results.weeks]
        chart.add(label, values)
        lines.append(f"{label}：{'，'.join(str(v) for v in values)}")
    return _svg(chart, "每周一起算。" + "；".join(lines) + "。", font_url)


def trend(
    found: CompanyTrend, *, width: int = 800, height: int = 360, font_url: str | None = None
) -> str:
    """Lines month by month: retention, second-service conversion, repeat purchases (%)."""
    title = f"公司留存与二次服务转化（近{found.window_days}天，%）"
    chart = pygal.Line(
        **_config(title, width, height, len(TREND_LABELS), len(found.points)),
        range=(0, 100),
        value_formatter=_percent,
        allow_interruptions=True,
        dots_size=4,
    )
    chart.x_labels = [
        f"{p.month.year}年{p.month.month}月"
        if i == 0 or p.month.month == 1
        else f"{p.month.month}月"
        for i, p in enumerate(found.points)
    ]
    lines = []
    for key, label in TREND_LABELS.items():
        values = [getattr(p, key) for p in found.points]
        chart.add(label, values)
        shown = "，".join(_percent(v) if v is not None else "无" for v in values)
        lines.append(f"{label}：{shown}")
    return _svg(chart, "；".join(lines) + "。", font_url)


def _percent(value: float | None) -> str:
    return "" if value is None else f"{value:g}%"
