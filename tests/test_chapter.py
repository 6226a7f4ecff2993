"""The chapter header (`skinlesion_utils.chapter`): profile, device, precision, where files go,
Colab's Drive, and chapter times from one formula that the lab guide shares."""
from __future__ import annotations

import ast
import re
import shutil
from pathlib import Path

import pytest
import torch

from skinlesion_utils import book_tools, chapter, profiles
from skinlesion_utils.chapter import start_chapter

ROOT = Path(__file__).resolve().parents[1]
CHAPTERS = sorted((ROOT / "chapters").glob("[0-9][0-9]_*.py"))
ENVS = ("SKINLESION_PROFILE", "SKINLESION_CACHE", "SKINLESION_RESULTS", "SKINLESION_DRIVE",
        "COLAB_RELEASE_TAG", "COLAB_GPU")


@pytest.fixture
def env(monkeypatch, tmp_path):
    """None of the header's variables set (all restored afterwards); results go to tmp_path."""
    for name in ENVS:
        monkeypatch.setenv(name, "x")
        monkeypatch.delenv(name)
    monkeypatch.setenv("SKINLESION_RESULTS", str(tmp_path / "results"))
    return monkeypatch


def _fake_t4(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda device=None: (7, 5))
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda device=None: "Tesla T4")
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: True)  # emulated on a T4


def test_a_gpu_runtime_with_nothing_set_runs_full_and_says_so(env, capsys):
    _fake_t4(env)
    ch = start_chapter("04_training")
    out = capsys.readouterr().out
    assert ch.profile.name == "full" and ch.device.type == "cuda"
    assert "profile 'full' (SKINLESION_PROFILE not set and a CUDA GPU is present)" in out
    assert "Tesla T4, compute capability 7.5" in out
    assert "precision fp16" in out  # not the emulated bf16
    assert "os.environ['SKINLESION_PROFILE'] = 'ci'" in out  # how to choose the CPU profile


def test_the_header_names_where_results_and_caches_go_without_machine_paths(env, capsys, tmp_path):
    env.delenv("SKINLESION_RESULTS")
    env.setenv("SKINLESION_PROFILE", "ci")
    start_chapter("05_evaluation")
    out = capsys.readouterr().out
    line = next(ln for ln in out.splitlines() if ln.startswith("results:"))
    assert line == f"results: (book)/results/ci/05_evaluation · cache: {chapter.display_path(profiles.default_cache_dir())}"
    assert "(book)" in line and str(ROOT) not in out
    assert "precision " in out and "device cpu" in out


def test_display_path_hides_the_machines_layout(env, tmp_path):
    assert chapter.display_path(ROOT / "results" / "ci") == "(book)/results/ci"
    assert chapter.display_path(ROOT) == "(book)"
    assert chapter.display_path(ROOT.parent / "shared" / "data") == "(book)/../shared/data"
    env.setattr(chapter, "COLAB_DRIVE", tmp_path / "MyDrive")
    assert chapter.display_path(tmp_path / "MyDrive" / "skinlesion-results") == "(Drive)/skinlesion-results"


def test_colab_with_drive_keeps_caches_and_results_on_drive(env, capsys, tmp_path):
    import os

    drive = tmp_path / "MyDrive"
    drive.mkdir()
    env.setattr(chapter, "COLAB_DRIVE", drive)
    env.setenv("COLAB_RELEASE_TAG", "test")
    env.setenv("SKINLESION_PROFILE", "ci")
    env.delenv("SKINLESION_RESULTS")
    ch = start_chapter("05_evaluation")
    out = capsys.readouterr().out
    assert os.environ["SKINLESION_CACHE"] == str(drive / "skinlesion-cache") == str(ch.profile.cache_dir)
    assert os.environ["SKINLESION_RESULTS"] == str(drive / "skinlesion-results")
    assert "results: (Drive)/skinlesion-results/ci/05_evaluation · cache: (Drive)/skinlesion-cache" in out
    assert "kept on Google Drive" in out
    ch.footer()  # what the page writes lands on Drive
    assert (drive / "skinlesion-results" / "ci" / "05_evaluation" / "timing.json").is_file()
    # one setting turns it off, also within the same session
    env.setenv("SKINLESION_DRIVE", "0")
    ch = start_chapter("05_evaluation")
    assert "SKINLESION_RESULTS" not in os.environ and "SKINLESION_CACHE" not in os.environ
    assert "Drive" not in capsys.readouterr().out


def test_colab_never_overrides_folders_set_by_hand(env, tmp_path, capsys):
    import os

    (tmp_path / "MyDrive").mkdir()
    env.setattr(chapter, "COLAB_DRIVE", tmp_path / "MyDrive")
    env.setenv("COLAB_GPU", "1")
    env.setenv("SKINLESION_PROFILE", "ci")
    env.setenv("SKINLESION_CACHE", str(tmp_path / "mine"))
    assert chapter.use_drive() is False
    assert os.environ["SKINLESION_CACHE"] == str(tmp_path / "mine")
    assert os.environ["SKINLESION_RESULTS"] == str(tmp_path / "results")
    start_chapter("05_evaluation")
    assert "not mounted" not in capsys.readouterr().out  # Drive is mounted: no false alarm


def test_colab_without_drive_warns_that_files_are_lost(env, capsys, tmp_path):
    env.setattr(chapter, "COLAB_DRIVE", tmp_path / "not-mounted")
    env.setenv("COLAB_RELEASE_TAG", "test")
    env.setenv("SKINLESION_PROFILE", "ci")
    start_chapter("05_evaluation")
    assert "Google Drive is not mounted" in capsys.readouterr().out


# ---------------------------------------------------------------------------------- times


def test_the_footer_measures_the_time_the_next_header_prints(env, capsys):
    env.setenv("SKINLESION_PROFILE", "ci")
    ch = start_chapter("09_reproduction_audit")
    assert "CPU (ci): not measured yet" in capsys.readouterr().out
    ch.footer()
    timing = chapter.read_timing("09_reproduction_audit", "ci")
    assert timing["profile"] == "ci" and 0 <= timing["minutes"] < 1
    start_chapter("09_reproduction_audit")
    assert f"< 1 min CPU (ci, measured at the last execution, {timing['date'][:10]})" in capsys.readouterr().out


def test_the_estimate_comes_from_the_profile_not_from_typed_numbers():
    full = profiles.profile("full")
    base = chapter.chapter_workload("06_ablation", full)
    trained = sum(n for _, n, k in base if k == "train")
    assert trained == len(full.seeds) * 6 * full.bench_epochs * (2637 - 396)
    double = chapter.chapter_workload("06_ablation", full.with_(bench_epochs=2 * full.bench_epochs))
    assert sum(n for _, n, k in double if k == "train") == 2 * trained
    fewer = chapter.chapter_workload("06_ablation", full.with_(seeds=(0, 1)))
    assert len([w for w in fewer if w[2] == "train"]) == 12
    main = chapter.chapter_workload("04_training", full)
    assert main[0] == ("asff_resnet50", full.epochs * (2637 - 396), "train")
    assert chapter.estimated_minutes("04_training") == pytest.approx(profiles.t4_minutes(main))


def test_every_chapter_has_a_workload_and_its_header_prints_the_estimate(env, capsys):
    assert set(chapter.WORKLOADS) == {p.stem for p in CHAPTERS}
    env.setenv("SKINLESION_PROFILE", "ci")
    for py in CHAPTERS:
        start_chapter(py.stem)
        line = next(ln for ln in capsys.readouterr().out.splitlines() if ln.startswith("time:"))
        assert f"{chapter.format_minutes(chapter.estimated_minutes(py.stem))} on a Colab T4 (full, estimate" in line


@pytest.mark.parametrize("py", CHAPTERS, ids=lambda p: p.stem)
def test_every_chapter_calls_the_header_and_types_no_time(py):
    source = py.read_text()
    calls = [n for n in ast.walk(ast.parse(source)) if isinstance(n, ast.Call)
             and getattr(n.func, "id", getattr(n.func, "attr", None)) == "start_chapter"]
    assert [ast.literal_eval(c.args[0]) for c in calls] == [py.stem]
    time_line = re.search(r"^# · \*\*time:\*\*(.*?)^#$", source, flags=re.M | re.S).group(1)
    assert not re.search(r"\d+\s*(min|h)\b", time_line), time_line


def test_format_minutes():
    assert [chapter.format_minutes(m) for m in (None, 0.2, 3.6, 12.2, 35.4)] == [
        "not measured yet", "< 1 min", "~4 min", "~10 min", "~35 min"]


def test_the_lab_guide_shows_the_formulas_numbers():
    assert book_tools.check_time_table(ROOT) == []
    text = (ROOT / book_tools.LAB_TIMES).read_text()
    rows = re.findall(r"^\| (\d\d) \| ([^|]+) \| ", text.split(book_tools.TIMES_BEGIN)[1], flags=re.M)
    assert [r[0] for r in rows] == [p.stem[:2] for p in CHAPTERS]
    for (num, shown), py in zip(rows, CHAPTERS):
        assert shown.strip() == chapter.format_minutes(chapter.estimated_minutes(py.stem))


def test_no_page_types_a_t4_time_outside_the_generated_table():
    for md in sorted((ROOT / "book").rglob("*.md")):
        text = md.read_text()
        if book_tools.TIMES_BEGIN in text:
            text = text.split(book_tools.TIMES_BEGIN)[0] + text.split(book_tools.TIMES_END)[1]
        for line in text.splitlines():
            assert not ("T4" in line and re.search(r"~\s*\d+\s*min", line)), f"{md.name}: {line}"


def test_a_stale_lab_guide_table_fails_the_check_and_is_rewritten(tmp_path):
    shutil.copy(ROOT / "_config.yml", tmp_path / "_config.yml")
    (tmp_path / "chapters").mkdir()
    for py in CHAPTERS:
        shutil.copy(py, tmp_path / "chapters" / py.name)
    guide = tmp_path / book_tools.LAB_TIMES
    guide.parent.mkdir(parents=True)
    text = (ROOT / book_tools.LAB_TIMES).read_text()
    head, block = text.split(book_tools.TIMES_BEGIN)
    stale = head + book_tools.TIMES_BEGIN + re.sub(r"^(\| 06 \| )[^|]+", r"\1~60 min ", block, flags=re.M)
    assert stale != text
    guide.write_text(stale)
    assert any("differs from chapter.estimated_minutes" in p for p in book_tools.check_time_table(tmp_path))
    book_tools.write_time_table(tmp_path)
    assert guide.read_text() == text and book_tools.check_time_table(tmp_path) == []
