"""mkdocs hook: pages under docs/ may link to files elsewhere in the repository.

A page links to ``../bench/results/quick/fig3.png`` or ``../bench/README.md`` so that the link
also works when the Markdown is read on its own. This hook adds each such file to the site at
its path in the repository (``bench/results/quick/fig3.png``), rewrites the link to that path,
and does the same, one level further, for the links of an added Markdown page
(``bench/README.md`` linking ``results/bench.json``). A link to a file that does not exist is
left alone, so ``mkdocs build --strict`` still reports it.

The docstrings cross-reference in Sphinx's roles (:class:`GAN`, :func:`npgen.theory.corollary2`).
The API pages turn each into a link to its entry in the reference when one exists (through
mkdocs-autorefs), and into plain code otherwise.
"""

import posixpath
import re
from pathlib import Path

from mkdocs.structure.files import File

ROOT = Path(__file__).resolve().parent
_LINK = re.compile(r"\]\((?P<target>[^)\s#]+)(?P<anchor>#[^)\s]*)?\)")
_ROLE = re.compile(r":(?:py:)?(?:class|mod|func|meth|attr|data|exc|obj):<code>~?(?P<name>[\w.]+)(?:\(\))?</code>")
_outside = {}  # repository path of an added file -> True


def _repository_path(page_path, target):
    """The repository-relative path a relative link of ``page_path`` points to, if outside docs/."""
    if "://" in target or target.startswith(("/", "mailto:")):
        return None
    path = posixpath.normpath(posixpath.join(posixpath.dirname(page_path), target))
    if path.startswith("../") or path.startswith("docs/") or not (ROOT / path).is_file():
        return None
    return path


def _links(page_path):
    text = (ROOT / page_path).read_text(encoding="utf-8")
    return [match["target"] for match in _LINK.finditer(text)]


def on_files(files, config):
    docs = Path(config["docs_dir"])
    pages = [f"docs/{path.relative_to(docs).as_posix()}" for path in docs.rglob("*.md")]
    for _ in range(2):  # docs pages, then the Markdown files they bring in
        added = []
        for page in pages:
            for target in _links(page):
                path = _repository_path(page, target)
                if path and path not in _outside:
                    _outside[path] = True
                    files.append(File(path, str(ROOT), config["site_dir"], config["use_directory_urls"]))
                    if path.endswith(".md"):
                        added.append(path)
        pages = added
    return files


def on_page_markdown(markdown, page, config, files):
    source = page.file.src_uri
    page_path = source if source in _outside else f"docs/{source}"

    def rewrite(match):
        path = _repository_path(page_path, match["target"])
        if path is None and source in _outside:  # an added page linking into docs/
            target = posixpath.normpath(posixpath.join(posixpath.dirname(source), match["target"]))
            if target.startswith("docs/"):
                return f"]({posixpath.relpath(target[5:], posixpath.dirname(source) or '.')}{match['anchor'] or ''})"
            return match[0]
        if path is None:
            return match[0]
        return f"]({posixpath.relpath(path, posixpath.dirname(source) or '.')}{match['anchor'] or ''})"

    return _LINK.sub(rewrite, markdown)


def on_page_content(html, page, config, files):
    def link(match):
        name = match["name"]
        shown = name.rsplit(".", 1)[-1] if "<code>~" in match[0] else name
        return f'<autoref identifier="{name}" optional><code>{shown}</code></autoref>'

    return _ROLE.sub(link, html)
