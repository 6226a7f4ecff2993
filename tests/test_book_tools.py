"""The chapter pair check that `make test` runs: drift, missing outputs and wrong links fail."""
from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from skinlesion_utils import book_tools
from skinlesion_utils.chapter import start_chapter

ROOT = Path(__file__).resolve().parents[1]
CHAPTER = "00_setup_and_data"


@pytest.fixture
def book(tmp_path):
    """A copy of the book's config and chapter 00 (source, executed notebook)."""
    shutil.copy(ROOT / "_config.yml", tmp_path / "_config.yml")
    (tmp_path / "chapters").mkdir()
    for ext in (".py", ".ipynb"):
        shutil.copy(ROOT / "chapters" / f"{CHAPTER}{ext}", tmp_path / "chapters" / f"{CHAPTER}{ext}")
    return tmp_path


def test_the_real_chapters_pass(capsys):
    assert book_tools.check(ROOT) == 0
    assert "✅" in capsys.readouterr().out


def test_intact_copy_passes(book):
    assert book_tools.check_pair(book / "chapters" / f"{CHAPTER}.py", book) == []


def test_drift_between_py_and_ipynb_fails(book):
    py = book / "chapters" / f"{CHAPTER}.py"
    py.write_text(py.read_text().replace("counts = data.dataset_table", "counts = data.dataset_table  # edited", 1))
    problems = book_tools.check_pair(py, book)
    assert any("differ" in p and "make notebooks" in p for p in problems)


def test_missing_outputs_fail(book):
    import nbformat

    nb_path = book / "chapters" / f"{CHAPTER}.ipynb"
    nb = nbformat.read(nb_path, as_version=4)
    for cell in nb.cells:
        if cell.cell_type == "code":
            cell.execution_count = None
            cell.outputs = []
    nbformat.write(nb, nb_path)
    problems = book_tools.check_pair(book / "chapters" / f"{CHAPTER}.py", book)
    assert any("no stored outputs" in p for p in problems)


def test_checked_cells_must_not_store_stderr(book):
    import nbformat

    nb_path = book / "chapters" / f"{CHAPTER}.ipynb"
    nb = nbformat.read(nb_path, as_version=4)
    checked = next(c for c in nb.cells if c.cell_type == "code" and "NBVAL_CHECK_OUTPUT" in c.source)
    checked.outputs.insert(0, nbformat.v4.new_output("stream", name="stderr",
                                                     text="/home/someone/site-packages/tqdm/auto.py:21: TqdmWarning\n"))
    nbformat.write(nb, nb_path)
    problems = book_tools.check_pair(book / "chapters" / f"{CHAPTER}.py", book)
    assert any("store stderr" in p for p in problems)


def test_oversized_notebook_fails(book, monkeypatch):
    monkeypatch.setattr(book_tools, "MAX_NOTEBOOK_BYTES", 1000)
    problems = book_tools.check_pair(book / "chapters" / f"{CHAPTER}.py", book)
    assert any("MB of stored outputs" in p for p in problems)


def test_badge_must_use_the_configured_repository(book):
    cfg = book / "_config.yml"
    cfg.write_text(cfg.read_text().replace("asff-skinlesion-book/asff-skinlesion-book", "someone/else"))
    problems = book_tools.check_pair(book / "chapters" / f"{CHAPTER}.py", book)
    assert any("Colab badge points to" in p for p in problems)
    assert any("install line uses" in p for p in problems)
    book_tools.fix_badges(book)
    assert "someone/else" in (book / "chapters" / f"{CHAPTER}.py").read_text()


def test_missing_ipynb_is_reported(book):
    (book / "chapters" / f"{CHAPTER}.ipynb").unlink()
    assert "no paired" in book_tools.check_pair(book / "chapters" / f"{CHAPTER}.py", book)[0]


def test_colab_url_comes_from_config():
    url, branch = book_tools.repository(ROOT)
    assert book_tools.colab_url("04_training", ROOT) == (
        f"https://colab.research.google.com/github/{url.split('github.com/')[1]}/blob/{branch}/chapters/04_training.ipynb"
    )


def test_chapter_header_reports_profile_and_device(monkeypatch, capsys, tmp_path):
    monkeypatch.setenv("SKINLESION_PROFILE", "ci")
    monkeypatch.setenv("SKINLESION_RESULTS", str(tmp_path))  # the footer writes timing.json there
    ch = start_chapter("99_test")
    out = capsys.readouterr().out
    assert "profile 'ci'" in out and "device cpu" in out
    assert "profile 'ci'" in ch.footer()


def test_chapter_header_silences_the_ipywidgets_warning_of_tqdm(monkeypatch, capsys):
    import warnings

    from tqdm import TqdmWarning

    monkeypatch.setenv("SKINLESION_PROFILE", "ci")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        start_chapter(CHAPTER)
        warnings.warn("IProgress not found. Please update jupyter and ipywidgets.", TqdmWarning)
        warnings.warn("another warning", TqdmWarning)
    assert [str(w.message) for w in caught] == ["another warning"]


# ----------------------------------------------------------- stored console output, as a terminal shows it
def test_terminal_text_keeps_the_last_state_of_redrawn_and_nested_bars():
    from skinlesion_utils.book_tools import terminal_text

    assert terminal_text("x 1%\rx 50%\rx 100%\n") == "x 100%\n"
    assert terminal_text("a\rb\nc") == "b\nc"
    assert terminal_text("plain line\n") == "plain line\n"
    # tqdm's nested bars: the inner bar is drawn one line down, then the cursor goes back up (ESC[A)
    nested = ("\router 0/2\n\rinner 0/3\x1b[A\n\rinner 3/3\x1b[A\router 1/2\n\r         \x1b[A\router 2/2\n")
    assert terminal_text(nested) == "outer 2/2\n"


def test_coalesce_streams_merges_consecutive_streams_and_leaves_the_rest(tmp_path):
    import nbformat

    from skinlesion_utils.book_tools import coalesce_streams

    cell = nbformat.v4.new_code_cell("x")
    cell.outputs = [nbformat.v4.new_output("stream", name="stderr", text=f"\rbar {i}/100") for i in range(101)]
    cell.outputs += [nbformat.v4.new_output("stream", name="stdout", text="done\n"),
                     nbformat.v4.new_output("execute_result", data={"text/plain": "42"}, execution_count=1),
                     nbformat.v4.new_output("stream", name="stdout", text="after\n")]
    nb = nbformat.v4.new_notebook(cells=[cell, nbformat.v4.new_markdown_cell("text")])
    assert coalesce_streams(nb) == 100
    kinds = [(o.output_type, o.get("name")) for o in nb.cells[0].outputs]
    assert kinds == [("stream", "stderr"), ("stream", "stdout"), ("execute_result", None), ("stream", "stdout")]
    assert nb.cells[0].outputs[0].text == "bar 100/100" and nb.cells[0].outputs[3].text == "after\n"
    nbformat.validate(nb)


def test_coalesce_streams_drops_finished_progress_bars_and_keeps_the_other_lines():
    import nbformat

    from skinlesion_utils.book_tools import coalesce_streams

    bar = "epochs: 100%|██████████| 12/12 [03:22<00:00, 16.85s/ep, loss=0.384, val_acc=0.831]"
    only_bars = nbformat.v4.new_code_cell("fit()")
    only_bars.outputs = [nbformat.v4.new_output("stream", name="stderr", text=f"\r{bar[:20]}\r{bar}\n")]
    mixed = nbformat.v4.new_code_cell("fit()")
    mixed.outputs = [nbformat.v4.new_output("stream", name="stdout", text=f"trained in 202 s\n{bar}\ndone\n")]
    nb = nbformat.v4.new_notebook(cells=[only_bars, mixed])
    coalesce_streams(nb)
    assert nb.cells[0].outputs == []
    assert nb.cells[1].outputs[0].text == "trained in 202 s\ndone\n"
    nbformat.validate(nb)
