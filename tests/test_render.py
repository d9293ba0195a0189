"""The report's renderer (npgen.study.render): Markdown from sections, HTML from that Markdown by
Python-Markdown, one self-contained page."""

import base64
import re

from npgen.study.render import render_html, render_markdown
from npgen.study.verdicts import HELD, INCONCLUSIVE, NOT_HELD, Check, Section

#: The smallest valid PNG: one transparent pixel.
PIXEL = base64.b64decode("iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNkYPhfDwAChwGA60e6kgAAAABJRU5ErkJggg==")


def sections():
    s = Section("fig9", "Figure 9: a test", "A claim.", image="fig9.png",
                header=["m", "max |grad g| over the samples", "mass"], rows=[["5", "1.5 ± 0.1 (n=3)", "0.2"]])
    s.checks = [Check("rule a", HELD, "1 < 2"), Check("rule b", NOT_HELD, "3 > 2"), Check("rule c", INCONCLUSIVE, "n=2")]
    s.notes = ["a note"]
    return [s, Section("grid", "No figure", "Another claim.", image="missing.png")]


def test_a_bar_inside_a_cell_stays_in_its_cell_and_the_figure_is_inlined(tmp_path):
    (tmp_path / "fig9.png").write_bytes(PIXEL)
    text = render_markdown(sections(), "tiny")
    page = render_html(text, "report", str(tmp_path))
    header = re.search(r"<thead>(.*?)</thead>", page, re.S).group(1)
    assert header.count("<th>") == 3 and "max |grad g| over the samples" in header
    assert re.search(r"<tbody>(.*?)</tbody>", page, re.S).group(1).count("<td>") == 3
    assert page.count("data:image/png;base64," + base64.b64encode(PIXEL).decode()) == 1
    assert 'src="fig9.png"' not in page and "(figure missing.png not found)" in page


def test_each_check_is_marked_with_its_verdict(tmp_path):
    page = render_html(render_markdown(sections(), "tiny"), "report", str(tmp_path))
    classes = re.findall(r'<li class="(\w+)"><strong>([^<]+)</strong>', page)
    assert classes == [("held", HELD), ("no", NOT_HELD), ("open", INCONCLUSIVE)]
    assert "<strong>Verdict: partly held (1 held, 1 did not hold, 1 inconclusive).</strong>" in page
