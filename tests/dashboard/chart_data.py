"""Reads a chart's data from a page: the JSON Django's json_script wrote next
to <canvas data-chart=... data-chart-data="ID"> (static/js/charts.js draws it)."""
from __future__ import annotations

import html
import json
import re


def chart_data(page: str, data_id: str):
    canvas = re.search(rf'<canvas data-chart="[^"]+" data-chart-data="{re.escape(data_id)}"', page)
    assert canvas, f"no chart canvas reads {data_id}"
    found = re.search(rf'<script id="{re.escape(data_id)}" type="application/json">(.*?)</script>', page, re.S)
    assert found, f"no json_script {data_id}"
    return json.loads(html.unescape(found.group(1)))
