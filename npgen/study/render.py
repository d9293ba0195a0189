"""The report's one renderer: sections to Markdown (report.md), and that Markdown to one
self-contained HTML page (report.html) with Python-Markdown, the figures inlined as base64 PNGs.

Python-Markdown (the ``markdown`` package) is the library mkdocs renders npgen's documentation
with, so report.md reads the same in the docs' toolchain and in report.html; its ``tables``
extension reads the report's pipe tables, and a tree processor inlines the figures and marks
each check's verdict.
"""

import base64
import html
import os

import markdown
from markdown.extensions import Extension
from markdown.treeprocessors import Treeprocessor

from .verdicts import COLLAPSE_RULES, HELD, INCONCLUSIVE, NOT_HELD

#: The CSS class of a check's list item, by its verdict.
VERDICT_CLASSES = {HELD: "held", NOT_HELD: "no", INCONCLUSIVE: "open"}
STYLE = ("body{font-family:system-ui,sans-serif;max-width:1100px;margin:auto;padding:0 1em;line-height:1.4}"
         "table{border-collapse:collapse;display:block;overflow-x:auto;margin:0.5em 0}"
         "td,th{border:1px solid #ccc;padding:2px 6px;font-size:13px;vertical-align:top}"
         "th{background:#f3f3f3}img{max-width:100%}li{margin:0.2em 0}"
         ".held strong:first-child{color:#060}.no strong:first-child{color:#a00}.open strong:first-child{color:#850}")


def table_cell(text):
    """A table cell's text with its bars escaped, so that '|grad g|' stays in one cell."""
    return str(text).replace("|", "\\|")


def failure_lines(failures):
    """The runs that failed, one line each, or nothing when none did."""
    if not failures:
        return []
    return [f"{len(failures)} runs failed and are missing from every table and figure below"
            " (their errors and tracebacks are in runs/failures.json):"] + [
        f"{name}: {error}" for name, error in failures]


def section_markdown(s):
    """One section: title, claim, figure, table, verdict, checks, collapsed runs and notes."""
    lines = [f"## {s.title}", "", f"**Paper's claim.** {s.claim}", ""]
    if s.image:
        lines += [f"![{s.name}]({s.image})", ""]
    if s.rows:
        lines += ["| " + " | ".join(map(table_cell, s.header)) + " |", "|" + "---|" * len(s.header)]
        lines += ["| " + " | ".join(map(table_cell, row)) + " |" for row in s.rows]
        lines.append("")
    lines.append(f"**Verdict: {s.verdict}.**")
    lines.append("")
    for check in s.checks:
        first, *rest = check.lines()
        lines += [f"- {first}"] + [f"  {line}" for line in rest]
    lines += [f"- collapsed: {name}" for name in s.collapsed]
    lines += [f"- diverged: {name}" for name in s.diverged]
    lines += [f"- note: {note}" for note in s.notes]
    lines.append("")
    return lines


def render_markdown(sections, preset, failures=(), notes=()):
    """report.md: the title, how to read it, the failed runs, then every section."""
    lines = [f"# npgen reproduction report ({preset} preset)", "", *[f"{note}\n" for note in notes],
             "Each section: the paper's claim, what this run measured (mean ± std over seeds, n = number "
             "of runs), and each check's rule beside its verdict. A check is \"held\" only when its rule has "
             "the evidence to decide; otherwise it is \"inconclusive\", with the reason.", "",
             f"Collapse: {COLLAPSE_RULES}. Collapsed runs are named in each section; table cells that "
             "include one also give the mean without them, and a check that rests on one says so.", ""]
    failed = failure_lines(failures)
    if failed:
        lines += ["## Failed runs", "", failed[0], ""] + [f"- {line}" for line in failed[1:]] + [""]
    for s in sections:
        lines += section_markdown(s)
    return "\n".join(lines)


class _Figures(Treeprocessor):
    """Inline every image of ``folder`` as a data URL (an image not found becomes its name in
    words), and give each list item that opens with a verdict the verdict's CSS class."""

    def __init__(self, md, folder):
        super().__init__(md)
        self.folder = folder

    def run(self, root):
        for image in root.iter("img"):
            path = os.path.join(self.folder, image.get("src", ""))
            if os.path.isfile(path):
                with open(path, "rb") as handle:
                    image.set("src", "data:image/png;base64," + base64.b64encode(handle.read()).decode("ascii"))
            else:
                image.tag, image.text = "em", f"(figure {image.get('src')} not found)"
                image.attrib.clear()
        for item in root.iter("li"):
            first = item[0] if len(item) else None
            if first is not None and first.tag == "strong" and not (item.text or "").strip():
                verdict = VERDICT_CLASSES.get(first.text)
                if verdict:
                    item.set("class", verdict)


class _FiguresExtension(Extension):
    def __init__(self, folder):
        super().__init__()
        self.folder = folder

    def extendMarkdown(self, md):  # noqa: N802 (Python-Markdown's name)
        md.treeprocessors.register(_Figures(md, self.folder), "npgen_figures", 5)


def render_html(text, title, folder):
    """One self-contained HTML page of the Markdown ``text``, whose images are files of ``folder``."""
    body = markdown.markdown(text, extensions=["tables", _FiguresExtension(folder)], output_format="html")
    return (f"<!doctype html>\n<html><head><meta charset='utf-8'><title>{html.escape(title)}</title>"
            f"<style>{STYLE}</style></head>\n<body>\n{body}\n</body></html>\n")
