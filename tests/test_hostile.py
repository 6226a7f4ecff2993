"""Hostile input against the command line and the API: every mistake a person can make gets
exit status 2 and one line ``error: what is wrong. Fix: …`` (the API raises one exception
family, :class:`skinlesion_utils.errors.SkinlesionError`, with the same messages); nothing
ends in a traceback or a silent wrong result.

The command line runs in-process through ``cli.main`` (argv in, exit status and stderr out:
what ``python -m skinlesion_utils`` does, without a 20-s interpreter start per case); one case
runs the real ``python -m skinlesion_utils``. The kill-between-checkpoint-writes and the
two-writers cases use real processes. Models are LeNet-5 / a tiny CNN at 16 px.
"""
from __future__ import annotations

import json
import os
import pickle
import re
import shutil
import signal
import struct
import subprocess
import sys
import time
import zlib
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn as nn
from PIL import Image

from skinlesion_utils import checkpoints, cli, data, errors, evaluate, models, paper, profiles, results
from skinlesion_utils import runs as R
from skinlesion_utils import splits, train as T
from skinlesion_utils.data import ImageTensorStore

ROOT = Path(__file__).resolve().parents[1]
DATA = Path(os.environ.get("SKINLESION_DATA", ROOT.parent / "shared" / "data"))
BAL = DATA / "isic_balanced"
pytestmark = pytest.mark.skipif(not BAL.is_dir(), reason="needs SKINLESION_DATA")
PROGRESS = re.compile(r"\d+%\|")


# ------------------------------------------------------------------------------ helpers


def run_cli(capsys, *args) -> tuple[int, list[str]]:
    """``skinlesion ARGS`` in-process: (exit status, non-empty stderr lines)."""
    try:
        code = cli.main([str(a) for a in args])
    except SystemExit as exc:  # argparse errors and --help exit through SystemExit
        code = exc.code
    err = capsys.readouterr().err  # tqdm's progress bars (\r-separated, "NN%|") are not messages
    return code, [line for line in err.splitlines() if line.strip() and not PROGRESS.search(line)]


def one_error(capsys, *args) -> str:
    """Run the CLI, require status 2 and exactly one stderr line; return that line."""
    code, lines = run_cli(capsys, *args)
    assert code == 2, (code, lines)
    assert len(lines) == 1, lines
    assert "Traceback" not in lines[0]
    return lines[0]


def _image_folder(root: Path, benign=("train/benign/3.jpg",), malignant=("train/malignant/2.jpg",)) -> Path:
    for cls, rels in (("benign", benign), ("malignant", malignant)):
        (root / cls).mkdir(parents=True, exist_ok=True)
        for k, rel in enumerate(rels):
            shutil.copy(BAL / rel, root / cls / f"{k}.jpg")
    return root


def _png_header_only(path: Path, width: int, height: int) -> Path:
    """A PNG that claims width × height pixels in 60 bytes (a decompression bomb's header)."""
    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body) & 0xFFFFFFFF)
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 16))
                     + chunk(b"IEND", b""))
    return path


@pytest.fixture(scope="module")
def subset():
    """64 training images, 32 per class (real, 16 px)."""
    store = ImageTensorStore.from_dataset("isic_balanced", split="train", resolution=16, progress=False)
    return tuple(i for c in (0, 1) for i in torch.nonzero(store.labels == c).flatten()[:32].tolist())


def _lenet_config(subset, **kw) -> R.RunConfig:
    base = dict(model="lenet5", profile="ci", recipe="fast", epochs=1, image_size=16, batch_size=32, seed=0,
                lr=5e-3, train_subset=subset)
    base.update(kw)
    return R.RunConfig(**base)


@pytest.fixture(scope="module")
def finished(subset, tmp_path_factory) -> Path:
    """A real finished run folder (LeNet-5, 16 px, 1 epoch on 64 images)."""
    folder = tmp_path_factory.mktemp("hostile") / "run"
    R.train_into(_lenet_config(subset), folder, progress=False)
    return folder


@pytest.fixture
def bad(tmp_path) -> dict:
    """Damaged and hostile checkpoint files, and a valid image folder."""
    zero = tmp_path / "zero.pt"
    zero.write_bytes(b"")
    marker = tmp_path / "PWNED"

    class Evil:
        def __reduce__(self):
            return (os.system, (f"touch {marker}",))

    evil = tmp_path / "evil.pt"
    evil.write_bytes(pickle.dumps(Evil()))
    plain = tmp_path / "plain.pt"
    torch.save({"model": {"w": torch.zeros(2)}}, plain)
    text = tmp_path / "notes.pt"
    text.write_text("hello world, not a checkpoint\n")
    return {"zero": zero, "evil": evil, "marker": marker, "plain": plain, "text": text,
            "images": _image_folder(tmp_path / "imgs"), "out": tmp_path / "out.json"}


# ------------------------------------------------------- command line: numbers and names

@pytest.mark.parametrize("option, value, expected", [
    ("--epochs", "0", "argument --epochs: '0' is not a whole number >= 1. Fix: pass 1 or more"),
    ("--epochs", "-1", "argument --epochs: '-1' is not a whole number >= 1. Fix: pass 1 or more"),
    ("--epochs", "two", "argument --epochs: 'two' is not a whole number >= 1. Fix: pass 1 or more"),
    ("--batch-size", "-8", "argument --batch-size: '-8' is not a whole number >= 1. Fix: pass 1 or more"),
    ("--batch-size", "0", "argument --batch-size: '0' is not a whole number >= 1. Fix: pass 1 or more"),
    ("--image-size", "0", "argument --image-size: '0' is not a whole number >= 1. Fix: pass 1 or more"),
])
def test_train_numbers_out_of_range(capsys, tmp_path, option, value, expected):
    line = one_error(capsys, "train", "--model", "lenet5", option, value, "--out", tmp_path / "run")
    assert line == f"error: skinlesion train: {expected}"
    assert not (tmp_path / "run").exists(), "nothing is written for a refused command"


def test_train_unknown_model(capsys, tmp_path):
    line = one_error(capsys, "train", "--model", "resnet51", "--out", tmp_path / "run")
    assert line.startswith("error: skinlesion train: argument --model: unknown model 'resnet51'; valid: lenet5, ")
    assert "asff_resnet50" in line and line.endswith("Fix: see `skinlesion train --help`")


def test_train_unknown_fusion(capsys, tmp_path):
    line = one_error(capsys, "train", "--model", "asff_resnet50", "--fusion", "asff", "--out", tmp_path / "run")
    assert line == ("error: skinlesion train: argument --fusion: unknown fusion 'asff'; valid: none, sum, concat, "
                    "asff_text, asff_code, asff_spatial. Fix: see `skinlesion train --help`")


def test_train_fusion_on_a_model_without_one(capsys, tmp_path):
    line = one_error(capsys, "train", "--model", "resnet50", "--fusion", "asff_text", "--out", tmp_path / "run")
    assert line == "error: --fusion asff_text: resnet50 has no fusion. Fix: drop --fusion, or use --model asff_resnet50"


def test_train_unknown_profile_option(capsys, tmp_path):
    line = one_error(capsys, "train", "--model", "lenet5", "--profile", "gpu", "--out", tmp_path / "run")
    assert line.startswith("error: skinlesion train: argument --profile: invalid choice: 'gpu' (choose from ")
    assert line.endswith(". Fix: see `skinlesion train --help`")


def test_train_unknown_profile_in_environment(capsys, tmp_path, monkeypatch):
    monkeypatch.setenv(profiles.ENV_PROFILE, "bogus")
    line = one_error(capsys, "train", "--model", "lenet5", "--out", tmp_path / "run")
    assert line.startswith("error: Unknown profile 'bogus' (from SKINLESION_PROFILE). Valid profiles: ci, full. Fix: export")


# ------------------------------------------------------------- command line: output paths

def test_train_out_is_a_file(capsys, tmp_path):
    (tmp_path / "f").write_text("x")
    line = one_error(capsys, "train", "--model", "lenet5", "--out", tmp_path / "f")
    assert line == f"error: skinlesion train: argument --out: {tmp_path / 'f'} is a file. Fix: pass a folder path (new, or a run folder)"


@pytest.mark.parametrize("command", [("lab", "assign", "--out"), ("lab", "assign", "--publish"),
                                     ("lab", "grade", "05", "x.ipynb", "--out"), ("gpu-bench", "--work"),
                                     ("gpu-bench", "--out")])
def test_every_output_folder_option_refuses_a_file(capsys, tmp_path, command):
    """The lab's and the GPU benchmark's folders are checked like `train --out`."""
    (tmp_path / "f").write_text("x")
    *words, option = command
    line = one_error(capsys, *words, option, tmp_path / "f")
    prog = " ".join(w for w in words if not w[0].isdigit() and not w.endswith(".ipynb"))
    assert line == (f"error: skinlesion {prog}: argument {option}: {tmp_path / 'f'} is a file. "
                    "Fix: pass a folder path (new, or a run folder)")
    assert (tmp_path / "f").read_text() == "x"  # nothing was written


def test_train_out_below_a_file(capsys, tmp_path):
    (tmp_path / "f").write_text("x")
    line = one_error(capsys, "train", "--model", "lenet5", "--out", tmp_path / "f" / "run")
    assert line == (f"error: skinlesion train: argument --out: {tmp_path / 'f' / 'run'}: {tmp_path / 'f'} is a file, "
                    "so nothing can be written below it. Fix: choose another path")


@pytest.mark.skipif(not Path("/proc/self").is_dir(), reason="needs Linux's /proc (read-only even for root)")
def test_output_in_an_unwritable_place(capsys, tmp_path):
    line = one_error(capsys, "train", "--model", "lenet5", "--out", "/proc/skinlesion-run")
    assert line == ("error: skinlesion train: argument --out: /proc/skinlesion-run: the folder /proc is not writable. "
                    "Fix: choose a path you can write (e.g. under your home folder)")


def test_output_inside_the_data_folder_is_refused(capsys, tmp_path, monkeypatch, bad):
    monkeypatch.setenv(data.ENV_DATA, str(DATA))
    line = one_error(capsys, "evaluate", "--checkpoint", bad["plain"], "--data", bad["images"],
                     "--out", DATA / "eval.json")
    assert line == (f"error: skinlesion evaluate: argument --out: {DATA / 'eval.json'} is inside the data folder {DATA} "
                    "($SKINLESION_DATA), which is never written. Fix: write results elsewhere")
    assert not (DATA / "eval.json").exists()


def test_an_existing_output_file_may_be_rewritten_and_a_new_folder_created(tmp_path):
    (tmp_path / "old.json").write_text("{}")
    assert cli.output_file(str(tmp_path / "old.json")) == tmp_path / "old.json"
    assert cli.output_dir(str(tmp_path / "new" / "run")) == tmp_path / "new" / "run"
    assert not (tmp_path / "new").exists(), "checking a path writes nothing"


def test_evaluate_out_is_a_folder(capsys, tmp_path, bad):
    line = one_error(capsys, "evaluate", "--checkpoint", bad["plain"], "--data", bad["images"], "--out", tmp_path)
    assert line == f"error: skinlesion evaluate: argument --out: {tmp_path} is a folder. Fix: pass a file name (e.g. {tmp_path / 'out.json'})"


# --------------------------------------------------------- command line: evaluate inputs

@pytest.mark.parametrize("value, expected", [
    ("1.5", "'1.5' is not a probability in [0, 1]. Fix: e.g. 0.5"),
    ("-0.1", "'-0.1' is not a probability in [0, 1]. Fix: e.g. 0.5"),
    ("nan", "'nan' is not a probability in [0, 1]. Fix: e.g. 0.5"),
])
def test_evaluate_threshold_out_of_range(capsys, bad, value, expected):
    line = one_error(capsys, "evaluate", "--checkpoint", bad["plain"], "--data", bad["images"], "--out", bad["out"],
                     "--threshold", value)
    assert line == f"error: skinlesion evaluate: argument --threshold: {expected}"


def test_evaluate_missing_checkpoint(capsys, tmp_path, bad):
    line = one_error(capsys, "evaluate", "--checkpoint", tmp_path / "nope.pt", "--data", bad["images"], "--out", bad["out"])
    assert line == (f"error: skinlesion evaluate: argument --checkpoint: {tmp_path / 'nope.pt'} does not exist. "
                    "Fix: pass the path of an existing file")


def test_evaluate_checkpoint_is_a_folder(capsys, tmp_path, bad):
    line = one_error(capsys, "evaluate", "--checkpoint", tmp_path, "--data", bad["images"], "--out", bad["out"])
    assert line == (f"error: skinlesion evaluate: argument --checkpoint: {tmp_path} is a folder, not a file. "
                    "Fix: pass the path of an existing file")


def test_evaluate_missing_data_folder(capsys, tmp_path, bad):
    line = one_error(capsys, "evaluate", "--checkpoint", bad["plain"], "--data", tmp_path / "nowhere", "--out", bad["out"])
    assert line == (f"error: skinlesion evaluate: argument --data: {tmp_path / 'nowhere'} does not exist. "
                    "Fix: pass an existing folder")


def test_evaluate_zero_byte_checkpoint(capsys, bad):
    line = one_error(capsys, "evaluate", "--checkpoint", bad["zero"], "--data", bad["images"], "--out", bad["out"])
    assert line == (f"error: Checkpoint {bad['zero']} is empty (0 bytes): its writer was stopped. "
                    "Fix: delete it and train again (or resume from the run's last.pt).")


def test_evaluate_truncated_checkpoint(capsys, finished, bad, tmp_path):
    blob = (finished / "last.pt").read_bytes()
    cut = tmp_path / "cut.pt"
    cut.write_bytes(blob[: len(blob) // 2])
    line = one_error(capsys, "evaluate", "--checkpoint", cut, "--data", bad["images"], "--out", bad["out"])
    assert line.startswith(f"error: Checkpoint {cut} is truncated or not a torch file (")
    assert line.endswith("). Fix: delete it and train again, or copy the complete file.")


def test_evaluate_text_file_as_checkpoint(capsys, bad):
    line = one_error(capsys, "evaluate", "--checkpoint", bad["text"], "--data", bad["images"], "--out", bad["out"])
    assert line.startswith(f"error: Checkpoint {bad['text']} is truncated or not a torch file (")


def test_evaluate_refuses_a_malicious_pickle_and_runs_none_of_it(capsys, bad):
    line = one_error(capsys, "evaluate", "--checkpoint", bad["evil"], "--data", bad["images"], "--out", bad["out"])
    assert line == (f"error: Refused to load {bad['evil']}: it holds pickled objects other than tensors and numbers, "
                    "and a pickle can run code (torch.load weights_only=True). Fix: use a checkpoint written by this "
                    "package, or load it yourself only if you trust who made it.")
    assert not bad["marker"].exists(), "the pickle's code ran"


def test_evaluate_plain_state_dict_is_not_a_checkpoint(capsys, bad):
    line = one_error(capsys, "evaluate", "--checkpoint", bad["plain"], "--data", bad["images"], "--out", bad["out"])
    assert line == (f"error: {bad['plain']} is not a skinlesion-checkpoint/1 checkpoint (found None). "
                    "Fix: load it with torch.load and model.load_state_dict yourself, or retrain.")


def test_evaluate_checkpoint_of_an_unknown_architecture(capsys, finished, bad, tmp_path):
    ckpt = torch.load(finished / "best.pt", weights_only=True)
    ckpt["spec"]["name"] = "resnet9000"
    checkpoints.save_checkpoint(ckpt, tmp_path / "other.pt")
    line = one_error(capsys, "evaluate", "--checkpoint", tmp_path / "other.pt", "--data", bad["images"], "--out", bad["out"])
    assert line.startswith("error: Unknown model 'resnet9000'. Fix: use one of lenet5, ")


# ------------------------------------------------------- command line: the image folder

def _evaluate_folder(capsys, finished, folder, out):
    return one_error(capsys, "evaluate", "--checkpoint", finished / "last.pt", "--data", folder, "--out", out)


def test_folder_with_wrong_layout(capsys, finished, tmp_path):
    (tmp_path / "flat").mkdir()
    shutil.copy(BAL / "train/benign/3.jpg", tmp_path / "flat" / "a.jpg")
    line = _evaluate_folder(capsys, finished, tmp_path / "flat", tmp_path / "o.json")
    assert line == (f"error: Wrong layout in {tmp_path / 'flat'}: expected sub-folders benign/ and malignant/ holding the "
                    f"images, found no sub-folders. It holds 1 loose image files. Fix: sort the images into "
                    f"{tmp_path / 'flat'}/benign/ and {tmp_path / 'flat'}/malignant/.")
    assert not (tmp_path / "o.json").exists()


def test_folder_with_unknown_class_folder(capsys, finished, tmp_path):
    root = _image_folder(tmp_path / "imgs")
    _image_folder(tmp_path / "tmp_nevus", benign=("train/benign/4.jpg",))
    shutil.move(tmp_path / "tmp_nevus" / "benign", root / "nevus")
    line = _evaluate_folder(capsys, finished, root, tmp_path / "o.json")
    assert line == (f"error: Unknown class folder(s) ['nevus'] in {root}: only ['benign', 'malignant'] are allowed "
                    "(benign = 0, malignant = 1). Fix: rename or remove them.")


def test_folder_with_empty_class(capsys, finished, tmp_path):
    root = _image_folder(tmp_path / "imgs", malignant=())
    line = _evaluate_folder(capsys, finished, root, tmp_path / "o.json")
    assert line == f"error: Class folder {root / 'malignant'} is empty. Fix: add that class's images to it."


def test_folder_with_corrupt_image(capsys, finished, tmp_path):
    root = _image_folder(tmp_path / "imgs")
    (root / "benign" / "bad.jpg").write_bytes(b"\xff\xd8 not really a jpeg")
    line = _evaluate_folder(capsys, finished, root, tmp_path / "o.json")
    assert line.startswith(f"error: Cannot decode image {root / 'benign' / 'bad.jpg'}: ")
    assert line.endswith("Fix: re-download it (fetch() re-fetches files that fail their checksum) or remove it from the folder.")


def test_folder_with_non_image_file(capsys, finished, tmp_path):
    root = _image_folder(tmp_path / "imgs")
    (root / "malignant" / "notes.txt").write_text("x")
    line = _evaluate_folder(capsys, finished, root, tmp_path / "o.json")
    assert line == (f"error: Not an image file: {root / 'malignant' / 'notes.txt'} (allowed endings: "
                    ".jpg, .jpeg, .png, .bmp, .tif, .tiff, .webp). Fix: move non-image files out of the class folders.")


def test_folder_with_dangling_link_is_reported_not_skipped(capsys, finished, tmp_path):
    root = _image_folder(tmp_path / "imgs")
    (root / "malignant" / "gone.jpg").symlink_to(tmp_path / "deleted.jpg")
    line = _evaluate_folder(capsys, finished, root, tmp_path / "o.json")
    assert line == (f"error: Broken link: {root / 'malignant' / 'gone.jpg'} points to {tmp_path / 'deleted.jpg'}, "
                    "which does not exist. Fix: restore the target, or remove the link.")


@pytest.mark.parametrize("side, shown", [(100_000, "10,000,000,000 pixels"), (9_500, "9500 × 9500 = 90,250,000 pixels")])
def test_folder_with_decompression_bomb(capsys, finished, tmp_path, side, shown):
    root = _image_folder(tmp_path / "imgs")
    _png_header_only(root / "benign" / "bomb.png", side, side)
    line = _evaluate_folder(capsys, finished, root, tmp_path / "o.json")
    assert line == (f"error: Image {root / 'benign' / 'bomb.png'} is too large to decode ({shown}; the limit is "
                    "89,478,485 pixels, data.MAX_IMAGE_PIXELS): a decompression bomb or a scan far beyond any model's "
                    "input. Fix: downscale it (e.g. to 1024 px) or remove it from the folder.")


# ------------------------------------------------------------- command line: other commands

def test_audit_missing_folder(capsys, tmp_path):
    line = one_error(capsys, "audit", "--a", tmp_path / "none", "--out", tmp_path / "p.csv")
    assert line == f"error: skinlesion audit: argument --a: {tmp_path / 'none'} does not exist. Fix: pass an existing folder"


def test_audit_negative_threshold(capsys, tmp_path):
    line = one_error(capsys, "audit", "--a", tmp_path, "--threshold", "-1", "--out", tmp_path / "p.csv")
    assert line == "error: skinlesion audit: argument --threshold: '-1' is not a whole number >= 0. Fix: pass 0 or more"


def test_audit_threshold_beyond_the_hash_is_refused_before_hashing(capsys, tmp_path):
    line = one_error(capsys, "audit", "--a", tmp_path, "--threshold", "500", "--out", tmp_path / "p.csv")
    assert line == "error: threshold=500 bits is outside 0..128 for method 'phash+dhash'. Fix: pass a threshold from 0 to 128."
    assert not (tmp_path / "p.csv").exists()


def test_cam_score_zero_limit(capsys, finished, tmp_path):
    line = one_error(capsys, "cam-score", "--checkpoint", finished / "last.pt", "--images", tmp_path,
                     "--out", tmp_path / "c.json", "--limit", "0")
    assert line == "error: skinlesion cam-score: argument --limit: '0' is not a whole number >= 1. Fix: pass 1 or more"


def test_bench_zero_steps_and_unknown_model(capsys):
    assert one_error(capsys, "bench", "--steps", "0") == \
        "error: skinlesion bench: argument --steps: '0' is not a whole number >= 1. Fix: pass 1 or more"
    assert one_error(capsys, "bench", "--models", "resnet5").startswith(
        "error: skinlesion bench: argument --models: unknown model 'resnet5'; valid: lenet5, ")


def test_lab_grade_zero_timeout(capsys, tmp_path):
    nb = tmp_path / "x.ipynb"
    nb.write_text("{}")
    line = one_error(capsys, "lab", "grade", nb, "--timeout", "0")
    assert line == "error: skinlesion lab grade: argument --timeout: '0' is not a whole number >= 1. Fix: pass 1 or more"


def test_data_unknown_dataset_and_missing_name(capsys):
    assert one_error(capsys, "data", "locate", "isic2018").startswith(
        "error: Unknown dataset 'isic2018'. Valid names: isic_balanced, ")
    assert one_error(capsys, "data", "verify") == (
        "error: `data verify` needs a dataset name. Fix: add one of isic_balanced, isic2019_external, "
        "isic2019_external_sample, isic2020_metadata")


def test_unknown_sub_command(capsys):
    line = one_error(capsys, "trian")
    assert line.startswith("error: skinlesion: argument COMMAND: invalid choice: 'trian' (choose from ")


def test_debug_shows_the_traceback(capsys, bad):
    with pytest.raises(errors.CheckpointError, match="is empty"):
        cli.main(["--debug", "evaluate", "--checkpoint", str(bad["zero"]), "--data", str(bad["images"]),
                  "--out", str(bad["out"])])


def test_real_command_line_prints_one_line_and_no_traceback(bad):
    env = {**os.environ, "SKINLESION_DATA": str(DATA)}
    proc = subprocess.run([sys.executable, "-m", "skinlesion_utils", "evaluate", "--checkpoint", str(bad["evil"]),
                           "--data", str(bad["images"]), "--out", str(bad["out"])],
                          capture_output=True, text=True, env=env, timeout=300, cwd=ROOT)
    assert proc.returncode == 2
    assert proc.stderr.splitlines() == [
        f"error: Refused to load {bad['evil']}: it holds pickled objects other than tensors and numbers, and a pickle "
        "can run code (torch.load weights_only=True). Fix: use a checkpoint written by this package, or load it "
        "yourself only if you trust who made it."]
    assert not bad["marker"].exists()


# --------------------------------------------------------------- run folders (command line)

def test_train_into_a_finished_run_of_another_config(capsys, finished):
    line = one_error(capsys, "train", "--model", "lenet5", "--epochs", "1", "--image-size", "16", "--resume",
                     "--out", finished)
    assert line.startswith(f"error: {finished} holds a finished run of another config (")
    assert line.endswith(f"Fix: use another folder, or delete {finished} and train again.")


def test_resume_from_a_checkpoint_of_another_architecture(finished, subset, tmp_path):
    folder = tmp_path / "run"
    folder.mkdir()
    ckpt = torch.load(finished / "last.pt", weights_only=True)
    ckpt["spec"] = checkpoints.make_model_spec("resnet34", image_size=16)
    checkpoints.save_checkpoint(ckpt, folder / "last.pt")
    with pytest.raises(errors.CheckpointError, match=r"^Checkpoint .*last\.pt holds weights of 'resnet34' but the model "
                                                     r"it is being loaded into is 'lenet5'"):
        R.train_into(_lenet_config(subset, epochs=2), folder, progress=False)


# --------------------------------------------------------------------------- the API

@pytest.mark.parametrize("field, value", [("epochs", 0), ("epochs", -1), ("batch_size", -8), ("batch_size", 0),
                                          ("image_size", 0), ("epochs", 2.5)])
def test_run_config_refuses_numbers_out_of_range(subset, field, value):
    with pytest.raises(errors.ConfigError, match=rf"^{field} must be a whole number >= 1; found {value!r}\. Fix: "):
        _lenet_config(subset, **{field: value})


def test_run_config_refuses_unknown_names(subset):
    with pytest.raises(errors.ConfigError, match=r"^Unknown model 'resnet51'\. Fix: use one of lenet5, "):
        R.RunConfig.from_profile("resnet51")
    with pytest.raises(errors.ConfigError, match=r"^Unknown fusion 'asff'\. Fix: use one of none, sum, "):
        R.RunConfig.from_profile("asff_resnet50", {"fusion": "asff"})
    with pytest.raises(errors.ConfigError, match=r"^resnet50 has no fusion \(fusion='sum' given\)\. Fix: "):
        R.RunConfig.from_profile("resnet50", {"fusion": "sum"})
    with pytest.raises(errors.ConfigError, match=r"^Unknown recipe 'slow'\. Fix: use one of "):
        _lenet_config(subset, recipe="slow")
    with pytest.raises(errors.ConfigError, match=r"^Unknown profile 'gpu'"):
        profiles.profile("gpu")
    with pytest.raises(errors.ConfigError, match=r"^resnet50 has no fusion \(fusion='sum' given\)"):
        models.build_model("resnet50", fusion="sum")


@pytest.mark.parametrize("kw, msg", [(dict(epochs=0), "epochs must be >= 1; found 0"),
                                     (dict(batch_size=0), "batch_size must be >= 1; found 0"),
                                     (dict(batch_size=-8), "batch_size must be >= 1; found -8")])
def test_fit_refuses_numbers_out_of_range(tmp_path, kw, msg):
    store = ImageTensorStore(torch.zeros(8, 3, 8, 8, dtype=torch.uint8), torch.arange(8) % 2, list("abcdefgh"), 8)
    with pytest.raises(errors.ConfigError, match=rf"^{msg}\. Fix: "):
        T.fit(nn.Sequential(nn.Flatten(), nn.Linear(192, 2)), store, out_dir=tmp_path, progress=False,
              **{"epochs": 1, "batch_size": 4, **kw})
    assert not (tmp_path / "last.pt").exists()


def test_evaluate_folder_refuses_a_threshold_out_of_range(finished, bad):
    with pytest.raises(errors.ConfigError, match=r"^threshold must be a probability in \[0, 1\]; found 1\.5\."):
        evaluate.evaluate_folder(finished / "last.pt", bad["images"], threshold=1.5)


def test_checkpoint_errors_from_the_api(tmp_path, bad):
    with pytest.raises(errors.CheckpointNotFound, match=r"^No checkpoint at .*nope\.pt \(no such file\)\. Fix: "):
        checkpoints.read_checkpoint(tmp_path / "nope.pt")
    with pytest.raises(FileNotFoundError):  # still what callers that predate the family catch
        checkpoints.load_checkpoint(tmp_path / "nope.pt")
    with pytest.raises(errors.CheckpointError, match=r"is empty \(0 bytes\)"):
        checkpoints.load_checkpoint(bad["zero"])
    with pytest.raises(errors.CheckpointError, match=r"^Refused to load"):
        checkpoints.load_checkpoint(bad["evil"])
    assert not bad["marker"].exists()


def test_one_exception_family_defined_once():
    assert data.DataError is errors.DataError and data.ChecksumError is errors.ChecksumError
    assert checkpoints.CheckpointError is errors.CheckpointError and paper.ClaimsError is errors.ClaimsError
    for cls in (errors.ConfigError, errors.DataError, errors.DataNotAvailableError, errors.CheckpointError,
                errors.RunError, errors.FolderInUse, errors.ClaimsNotTranscribed):
        assert issubclass(cls, errors.SkinlesionError) and issubclass(cls, ValueError)


# -------------------------------------------------------------- decoding and verification

def test_exif_orientation_is_applied_on_decode(tmp_path):
    src = BAL / "train/malignant/740.jpg"  # one of the 3 images of isic_balanced with a rotation tag
    with Image.open(src) as img:
        assert img.getexif().get(0x0112) == 6
        raw = np.asarray(img.convert("RGB")).transpose(2, 0, 1)
    out = data.decode_image(src, 224)
    assert np.array_equal(out, np.rot90(raw, k=-1, axes=(1, 2))), "orientation 6: rotated 90° clockwise"
    assert not np.array_equal(out, raw)
    assert data.DECODE_METHOD == "exif1"


def test_tensor_store_cache_key_names_the_decode_method(tmp_path, monkeypatch):
    monkeypatch.setenv(profiles.ENV_CACHE, str(tmp_path / "cache"))
    store = ImageTensorStore.from_dataset("isic2019_external_sample", resolution=8, progress=False)
    names = [p.name for p in (tmp_path / "cache" / "tensors").glob("*.pt")]
    assert len(store) == 1000 and names == [f"isic2019_external_sample-all-{data.get_spec('isic2019_external_sample').manifest_hash()[:12]}-8-squash-exif1.pt"]


def test_an_edit_that_keeps_size_and_mtime_is_caught(tmp_path, monkeypatch):
    monkeypatch.setenv(profiles.ENV_CACHE, str(tmp_path / "cache"))
    rels = ["train/benign/3.jpg", "test/malignant/1.jpg"]
    manifest = tmp_path / "tiny.sha256"
    manifest.write_text("".join(f"{data.sha256_file(BAL / r)}  ./{r}\n" for r in rels))
    spec = data.DatasetSpec("tiny_hostile", str(manifest), "images", splits=("train", "test"))
    monkeypatch.setitem(data.DATASETS, spec.name, spec)
    root = tmp_path / "tiny_hostile"
    for r in rels:
        (root / r).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(BAL / r, root / r)
    assert data.ensure_verified(spec.name, root) == root
    target = root / rels[0]
    st = target.stat()
    blob = bytearray(target.read_bytes())
    blob[-3] ^= 0xFF  # same size
    time.sleep(0.01)
    target.write_bytes(bytes(blob))
    os.utime(target, ns=(st.st_atime_ns, st.st_mtime_ns))  # same mtime
    assert target.stat().st_size == st.st_size and target.stat().st_mtime_ns == st.st_mtime_ns
    with pytest.raises(data.ChecksumError, match=r"Checksum mismatch for .*train/benign/3\.jpg"):
        data.ensure_verified(spec.name, root)


# ------------------------------------------------------------------ run folders (the API)

def test_run_is_finished_only_with_its_weights(finished, tmp_path):
    folder = tmp_path / "copy"
    shutil.copytree(finished, folder)
    (folder / "last.pt").unlink()
    with pytest.raises(errors.RunNotFound, match=r"^.*copy holds no finished run \(no last\.pt\)\. Fix: "):
        R.Run(folder)
    assert not R._is_finished(folder)


def test_results_without_weights_is_trained_again_not_trusted(finished, subset, tmp_path):
    folder = tmp_path / "copy"
    shutil.copytree(finished, folder)
    for name in ("last.pt", "best.pt"):
        (folder / name).unlink()
    run = R.train_into(_lenet_config(subset), folder, progress=False)
    assert (folder / "last.pt").is_file() and run.results["timing"]["resumed_from_epoch"] == 0
    assert run.results["created"] >= json.loads((finished / "results.json").read_text())["created"]
    assert run.predictions.equals(R.Run(finished).predictions), "the same config trains to the same predictions"


def test_a_failed_run_leaves_no_folder(subset, tmp_path):
    def broken(cfg):
        raise RuntimeError("the model cannot be built")
    with pytest.raises(RuntimeError, match="cannot be built"):
        R.train_into(_lenet_config(subset), tmp_path / "run", progress=False, model_fn=broken)
    assert not (tmp_path / "run").exists()


def test_stale_temporaries_are_swept_when_a_run_starts(tmp_path):
    out = tmp_path / "run"
    out.mkdir()
    stale, fresh = out / ".last.pt.abc123.tmp", out / ".best.pt.def456.tmp"
    stale.write_bytes(b"half a checkpoint")
    fresh.write_bytes(b"being written")
    old = time.time() - 3600
    os.utime(stale, (old, old))
    store = ImageTensorStore(torch.randint(0, 255, (16, 3, 8, 8), dtype=torch.uint8), torch.arange(16) % 2,
                             [str(i) for i in range(16)], 8)
    T.fit(nn.Sequential(nn.Flatten(), nn.Linear(192, 2)), store, epochs=1, batch_size=8, out_dir=out,
          device="cpu", progress=False)
    assert not stale.exists() and fresh.exists(), "only temporaries older than a minute are swept"
    assert (out / "last.pt").is_file()


# ------------------------------------------- kill between last.pt and best.pt (real process)

from runs_support import TINY_CNN_SRC as TINY  # noqa: E402
_ns: dict = {}
exec(TINY, _ns)

KILL_SCRIPT = TINY + '''
import os, signal, sys, torch
torch.set_num_threads(1)
from skinlesion_utils import checkpoints, splits, train as T
from skinlesion_utils.data import ImageTensorStore
store_file, out_dir, kill_epoch = sys.argv[1], sys.argv[2], int(sys.argv[3])
blob = torch.load(store_file, weights_only=True)
store = ImageTensorStore(blob["images"], blob["labels"], blob["ids"], 16)
tr, va = splits.train_val_split(store, 0.25, seed=0)
save = T.save_checkpoint
def save_then_die(ckpt, path):
    save(ckpt, path)
    if os.path.basename(str(path)) == "last.pt" and ckpt["epoch"] == kill_epoch:
        os.kill(os.getpid(), signal.SIGKILL)  # last.pt of this epoch is written, best.pt is not
T.save_checkpoint = save_then_die
T.seed_everything(0)
T.fit(TinyCNN(8), tr, va, recipe="fast", epochs=8, batch_size=16, seed=3, out_dir=out_dir, device="cpu",
      progress=False, model_spec=checkpoints.make_model_spec("tiny_cnn"))
'''


def _tiny_fit(store, out_dir, resume=False):
    tr, va = splits.train_val_split(store, 0.25, seed=0)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        T.seed_everything(0)
        T.fit(_ns["TinyCNN"](8), tr, va, recipe="fast", epochs=8, batch_size=16, seed=3, out_dir=out_dir,
              resume=resume, device="cpu", progress=False, model_spec=checkpoints.make_model_spec("tiny_cnn"))
    finally:
        torch.set_num_threads(threads)


def _random_store(n=96, res=16):
    g = torch.Generator().manual_seed(0)
    labels = torch.arange(n) % 2
    images = torch.randint(0, 256, (n, 3, res, res), generator=g, dtype=torch.uint8)
    images[labels == 1, 0] = images[labels == 1, 0] // 2 + 128
    return ImageTensorStore(images, labels, [f"img{i}.png" for i in range(n)], res, source="random")


def test_kill_between_last_and_best_then_resume_equals_uninterrupted(tmp_path):
    store = _random_store()
    store.save(tmp_path / "store.pt")
    _tiny_fit(store, tmp_path / "ref")
    ref_last = torch.load(tmp_path / "ref" / "last.pt", weights_only=True)
    ref_best = torch.load(tmp_path / "ref" / "best.pt", weights_only=True)
    best_epoch = ref_last["best_epoch"]
    assert best_epoch == ref_best["epoch"] >= 2, "the reference must improve after epoch 1 for this test to bite"
    script = tmp_path / "kill.py"
    script.write_text(KILL_SCRIPT)
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    victim = subprocess.run([sys.executable, str(script), str(tmp_path / "store.pt"), str(tmp_path / "killed"),
                             str(best_epoch)], env=env, timeout=300)
    assert victim.returncode == -signal.SIGKILL
    killed = tmp_path / "killed"
    assert torch.load(killed / "last.pt", weights_only=True)["epoch"] == best_epoch
    assert torch.load(killed / "best.pt", weights_only=True)["epoch"] < best_epoch, "best.pt is stale after the kill"
    _tiny_fit(store, killed, resume=True)
    last = torch.load(killed / "last.pt", weights_only=True)
    best = torch.load(killed / "best.pt", weights_only=True)
    assert last["epoch"] == 8 and all(torch.equal(last["model"][k], ref_last["model"][k]) for k in ref_last["model"])
    assert best["epoch"] == best_epoch
    assert all(torch.equal(best["model"][k], ref_best["model"][k]) for k in ref_best["model"])


def test_best_pt_that_cannot_be_repaired_is_refused(tmp_path):
    store = _random_store()
    _tiny_fit(store, tmp_path / "run")
    last = torch.load(tmp_path / "run" / "last.pt", weights_only=True)
    last["epoch"], last["best_epoch"] = 8, 1  # records the best at epoch 1, but best.pt holds another
    last["settings"]["epochs"] = 9
    checkpoints.save_checkpoint(last, tmp_path / "run" / "last.pt")
    best = torch.load(tmp_path / "run" / "best.pt", weights_only=True)
    with pytest.raises(errors.CheckpointError, match=rf"best\.pt holds epoch {best['epoch']} but .*last\.pt records "
                                                     r"the best epoch 1: the best weights are lost\. Fix: "):
        checkpoints.check_best(last, tmp_path / "run" / "best.pt")


# ------------------------------------------------------------ two writers (real processes)

WRITER_SCRIPT = TINY + '''
import sys, torch
torch.set_num_threads(1)
from skinlesion_utils import runs as R
cfg = R.RunConfig(model="tiny_cnn_hostile", profile="ci", recipe="fast", epochs=500, image_size=16, batch_size=32,
                  seed=0, lr=5e-3, train_subset=tuple(int(i) for i in sys.argv[2].split(",")))
R.train_into(cfg, sys.argv[1], progress=False, model_fn=lambda c: TinyCNN(8))
'''


def test_second_writer_is_refused_naming_the_first_and_the_lock_dies_with_it(capsys, subset, tmp_path):
    folder = tmp_path / "run"
    script = tmp_path / "writer.py"
    script.write_text(WRITER_SCRIPT)
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    first = subprocess.Popen([sys.executable, str(script), str(folder), ",".join(map(str, subset))], env=env)
    try:
        deadline = time.time() + 240
        while time.time() < deadline and not (folder / "last.pt").exists():
            assert first.poll() is None, "the first writer died"
            time.sleep(0.2)
        assert (folder / "last.pt").exists(), "the first writer never wrote a checkpoint"
        holder = (folder / R.LOCK_FILE).read_text()
        assert holder.startswith(f"pid {first.pid} on ")
        # the API: a second writer (this process) is refused, naming the first
        with pytest.raises(errors.FolderInUse, match=rf"^{re.escape(str(folder))} is being written by another process "
                                                     rf"\(pid {first.pid} on .*\)\. Fix: wait for it to finish"):
            R.train_into(_lenet_config(subset), folder, progress=False)
        # the command line: one line, exit 2, and the folder still holds only the first writer's run
        line = one_error(capsys, "train", "--model", "lenet5", "--image-size", "16", "--epochs", "1", "--out", folder)
        assert line.startswith(f"error: {folder} is being written by another process (pid {first.pid} on ")
        assert json.loads((folder / "config.json").read_text())["model"] == "tiny_cnn_hostile"
    finally:
        first.send_signal(signal.SIGKILL)
        first.wait()
    with results.exclusive_lock(folder / R.LOCK_FILE):  # the killed writer's lock died with it
        pass
    with pytest.raises(errors.RunNotFound):
        R.Run(folder)


# ------------------------------------------------------------------ one exception family, everywhere
def test_the_package_raises_no_plain_value_error():
    """Every anticipated error is a SkinlesionError (a ValueError subclass), so the command line
    turns it into one line and API callers catch one family; a plain ``ValueError`` would print
    a traceback from the command line."""
    import ast

    package = Path(errors.__file__).parent
    plain = []
    for path in sorted(package.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
            if isinstance(node, ast.Raise) and node.exc is not None:
                call = node.exc.func if isinstance(node.exc, ast.Call) else node.exc
                if isinstance(call, ast.Name) and call.id == "ValueError":
                    plain.append(f"{path.relative_to(package)}:{node.lineno}")
    assert not plain, f"raise ConfigError (or another errors.* class) instead of ValueError at {plain}"


def test_an_api_argument_error_is_a_skinlesion_error_and_still_a_value_error():
    """A former plain ValueError deep inside (metrics given two score columns) is now one of the
    family the command line prints as one line, and code catching ValueError still catches it."""
    from skinlesion_utils import metrics

    with pytest.raises(errors.ConfigError, match=r"two columns\)\. Pass P\(malignant\) only") as info:
        metrics.classification_report(np.array([0, 1]), np.array([[0.2, 0.8], [0.3, 0.7]]))
    assert isinstance(info.value, errors.SkinlesionError) and isinstance(info.value, ValueError)
