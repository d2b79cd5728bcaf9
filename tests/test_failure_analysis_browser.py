"""The analysis page in headless chromium: the chart and the table render, the strongest
factor first; a screenshot is kept in tests/artifacts/ (docs/analysis-page.png is one)."""

from __future__ import annotations

import pytest

from tests.test_failure_analysis_api import planted  # noqa: F401 (fixture)
from tests.test_failure_analysis_storage import DIST, VERSION
from tests.test_viewer_browser import CHROMIUM, dump_dom, screenshot, served_viewer  # noqa: F401 (fixture)

pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(CHROMIUM is None, reason="chromium is not installed (apt-get install chromium)"),
]


def test_browser_shows_the_analysis_chart_and_table(served_viewer, planted, tmp_path):  # noqa: F811
    url = f"{served_viewer}/dist/{DIST}/{VERSION}/analysis"
    dom = dump_dom(url, tmp_path)
    assert f"Why does {DIST} {VERSION} fail?" in dom
    assert dom.count('class="bar"') >= 3  # perl, useithreads, Foo::Bar as given and bucketed
    first_row = dom.split('id="factors"', 1)[1].split("</tr>", 2)[1]
    assert "prereq Foo::Bar" in first_row
    assert screenshot(url, "analysis-page.png", tmp_path).stat().st_size > 5000
