"""The pages' tables of measured numbers are the ones bench/tables.py builds from bench/results,
and the documentation builds with ``mkdocs build --strict``."""

import importlib.util
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
_spec = importlib.util.spec_from_file_location("bench_tables", ROOT / "bench" / "tables.py")
tables = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(tables)

_STATIC = "<!-- static table"


def test_every_page_table_is_the_generated_one():
    differences = tables.run(check=True)
    assert not differences, (
        "pages differ from bench/results; run python bench/tables.py:\n" + "\n".join(differences))


def test_a_changed_number_in_a_page_is_caught(tmp_path):
    page = tmp_path / "page.md"
    text = "# A page\n\n<!-- table:fig5 -->\n" + tables.TABLES["fig5"]() + "\n<!-- /table -->\n"
    page.write_text(text)
    assert tables.run(check=True, paths=[page]) == []
    row = next(line for line in text.splitlines() if line.startswith("| GAN | 3 | "))
    changed = row.replace("| GAN | 3 | ", "| GAN | 3 | 1", 1)  # a digit put in front of the cell
    page.write_text(text.replace(row, changed))
    differences = tables.run(check=True, paths=[page])
    assert len(differences) == 1 and f"-{changed}" in differences[0]
    assert changed in page.read_text(), "--check must not rewrite the page"
    assert tables.run(check=False, paths=[page]) and page.read_text() == text


def test_an_unknown_table_name_is_refused():
    with pytest.raises(ValueError, match="unknown table 'no-such-table'"):
        tables.render("<!-- table:no-such-table -->\n<!-- /table -->\n")


def test_every_generated_table_names_its_source_file():
    for name, build in tables.TABLES.items():
        text = build()
        sources = re.findall(r"`bench/results/([^`]+)`", text)
        assert sources, f"table {name} names no source"
        for path in sources:
            assert (tables.RESULTS / path).is_file(), f"table {name}: no file bench/results/{path}"


def _tables_outside_markers(text):
    """(line number, the line before) of each Markdown table that no marker generates."""
    lines = text.splitlines()
    inside, fence, found = False, False, []
    for number, line in enumerate(lines):
        if line.startswith("```"):
            fence = not fence
        elif line.startswith("<!-- table:"):
            inside = True
        elif line.startswith("<!-- /table -->"):
            inside = False
        elif (not inside and not fence and line.startswith("|") and number + 1 < len(lines)
              and lines[number + 1].startswith("|---")):
            before = next((lines[i] for i in range(number - 1, -1, -1) if lines[i].strip()), "")
            found.append((number + 1, before))
    return found


def test_a_table_outside_markers_is_declared_free_of_measurements():
    for page in tables.pages():
        for line, before in _tables_outside_markers(page.read_text()):
            assert before.startswith(_STATIC), (
                f"{page.relative_to(ROOT)} line {line}: a table not built by bench/tables.py; put"
                f" it between <!-- table:NAME --> markers, or declare it with '{_STATIC}: ... -->'"
                " if it holds no measured numbers")


def test_the_detector_of_undeclared_tables_finds_one():
    text = "intro\n\n| a | b |\n|---|---|\n| 1 | 2 |\n\n<!-- table:x -->\n| c |\n|---|\n<!-- /table -->\n"
    assert _tables_outside_markers(text) == [(3, "intro")]


@pytest.mark.parametrize("mean, std, shown", [
    (4.751, 0.3229, "4.75 ± 0.32"), (141.2, 7.626, "141 ± 8"), (193.3, 10.3, "193 ± 10"),
    (0.03018, 0.003938, "0.030 ± 0.004"), (0.2466, 0.01124, "0.247 ± 0.011"), (1.19, 0, "1.19")])
def test_mean_and_std_are_rounded_as_the_particle_data_group_does(mean, std, shown):
    assert tables.mean_std(mean, std) == shown


def test_a_report_cell_with_collapsed_runs_keeps_both_means():
    cell = tables.cell("4.936 ± 2.361 (n=3); without collapsed: 6.393 ± 1.412 (n=2)")
    assert cell == "4.9 ± 2.4 (n=3); 6.4 ± 1.4 (n=2) without collapsed runs"


def test_the_documentation_builds_strictly(tmp_path):
    pytest.importorskip("mkdocs")
    pytest.importorskip("mkdocstrings_handlers.python")
    start = time.perf_counter()
    result = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--config-file", str(ROOT / "mkdocs.yml"),
         "--site-dir", str(tmp_path / "site")],
        cwd=ROOT, capture_output=True, text=True, timeout=300,
        env={**os.environ, "NO_MKDOCS_2_WARNING": "1"})
    seconds = time.perf_counter() - start
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    front = (tmp_path / "site" / "index.html").read_text()
    assert "npgen" in front
    reference = (tmp_path / "site" / "api" / "models.html").read_text()
    assert "GAN" in reference and "fit" in reference
    assert ":class:<code>" not in reference and "autorefs-internal" in reference
    assert (tmp_path / "site" / "bench" / "results" / "quick" / "fig3.png").is_file()
    for page in (tmp_path / "site").rglob("*.html"):
        assert "|---|" not in page.read_text(), f"{page.name}: a Markdown table did not render"
    assert seconds < 120, f"mkdocs build took {seconds:.0f} s"


def test_ci_runs_the_readme_test_command():
    blocks = re.findall(r"```bash\n(.*?)```", (ROOT / "README.md").read_text(), re.DOTALL)
    command = next(line for block in blocks for line in block.splitlines() if "pytest" in line)
    assert ".[test,docs]" in command, "the test command installs the docs extra, so mkdocs is checked"
    assert command in (ROOT / ".ci" / "run").read_text()


def test_a_bar_inside_a_cell_does_not_split_it():
    assert tables.table(["max |grad g|"], [["1"]]).splitlines()[0] == "| max \\|grad g\\| |"
