"""`sam2long batch`: a job file of three tiny shots, in-process and on a local Ray.

A random-weight SAM 2.1 tiny network at 64 px, saved as a checkpoint file, and three
5-frame shots (two videos, one folder of frames) keep every run to seconds. The
reference for each shot is `sam2long track` run on the same arguments.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import yaml
from conftest import save_checkpoint, small_net, write_mp4
from PIL import Image

from sam2long.app import cli, jobs, ray_engine, shot_runner
from sam2long.app.run import ModelSettings, OutputSettings, Prompt, Source, TrackJob

W, H, N = 64, 48, 5
SIZE = 64


def frame(i, shift):
    img = np.full((H, W, 3), 25, np.uint8)
    x = 6 + 3 * i + shift
    img[10:26, x:x + 14] = (230, 60, 40)
    img[32:40, 4:56] = (40, 200, 90)
    return img


@pytest.fixture(scope="module")
def media(tmp_path_factory):
    d = tmp_path_factory.mktemp("media")
    write_mp4(d / "a.mp4", [frame(i, 0) for i in range(N)])
    write_mp4(d / "c.mp4", [frame(i, 5) for i in range(N)])
    (d / "b").mkdir()
    for i in range(N):
        Image.fromarray(frame(i, 2)).save(d / "b" / f"plate.{1001 + i}.png")
    mask = np.zeros((H, W), np.uint8)
    mask[10:26, 8:22] = 255
    Image.fromarray(mask).save(d / "b_obj2.png")
    save_checkpoint(small_net(image_size=SIZE), d / "random_tiny.pt")
    return d


# Three shots as a job file and, by hand, as the `sam2long track` arguments they mean.
SHOTS = [
    {"name": "sh010", "input": "a.mp4", "output": "out/sh010",
     "prompts": [{"object": 1, "frame": 0, "point": [15, 18]},
                 {"object": 1, "frame": 0, "point": [40, 36], "label": 0}]},
    {"name": "sh020", "input": "b", "output": "out/sh020", "pathways": 2, "no_preview": True,
     "prompts": [{"frame": 1002, "box": [8, 8, 30, 28]},
                 {"object": 2, "mask": "b_obj2.png"}]},  # a plate: frames 1001-1005, no frame = 1001
    {"name": "sh030", "input": "c.mp4", "output": "out/sh030", "reverse": True, "sam2": True,
     "prompts": [{"object": 3, "frame": 3, "point": [30, 18]}]},
]
TRACK_ARGS = [
    ["a.mp4", "--point", "15,18", "--point", "40,36,0"],
    ["b", "--pathways", "2", "--no-preview", "--frame", "1002", "--box", "8,8,30,28",
     "--object", "2", "--frame", "1001", "--mask", "b_obj2.png"],
    ["c.mp4", "--reverse", "--sam2", "--object", "3", "--frame", "3", "--point", "30,18"],
]
COMMON = ["--checkpoint", "random_tiny.pt", "--image-size", str(SIZE), "--device", "cpu", "--quiet"]


def write_job(folder: Path, shots=SHOTS, defaults=None, name="job.yaml") -> Path:
    job = {"defaults": defaults or {"checkpoint": "random_tiny.pt", "image_size": SIZE, "device": "cpu"},
           "shots": shots}
    path = folder / name
    path.write_text(yaml.safe_dump(job) if name.endswith(".yaml") else json.dumps(job))
    return path


def masks(d: Path) -> dict:
    return {p.relative_to(d).as_posix(): np.asarray(Image.open(p)) for p in sorted(d.rglob("*.png"))}


def same_outputs(got: Path, want: Path):
    a, b = masks(got), masks(want)
    assert sorted(a) == sorted(b) and a
    for name in a:
        assert np.array_equal(a[name], b[name]), name
    assert (got / "preview.mp4").exists() == (want / "preview.mp4").exists()
    assert (got / jobs.RECORD).is_file()


@pytest.fixture(scope="module")
def reference(media):
    """`sam2long track` on each shot, run from the media folder as a user would."""
    cwd = os.getcwd()
    os.chdir(media)
    try:
        for k, argv in enumerate(TRACK_ARGS):
            out = media / "ref" / SHOTS[k]["name"]
            assert cli.main(["track", *argv, *COMMON, "--out", str(out)]) == 0
    finally:
        os.chdir(cwd)
    return media / "ref"


@pytest.fixture
def workdir(media, tmp_path):
    """A job folder holding links to the media, so relative paths resolve against it."""
    for p in media.iterdir():
        if p.name != "ref":
            (tmp_path / p.name).symlink_to(p)
    return tmp_path


def batch(argv, capsys):
    rc = cli.main(["batch", *[str(a) for a in argv]])
    out, err = capsys.readouterr()
    events = [json.loads(line) for line in out.splitlines() if line.startswith("{")]
    return rc, events, err


def leftovers(folder: Path):
    return sorted(p.name for p in folder.rglob("*") if ".partial-" in p.name or ".old-" in p.name)


def kinds(events):
    return sorted((e["shot"], e["event"]) for e in events if e.get("event") not in (None, "started"))


# --- in-process ---------------------------------------------------------------------


def test_in_process_matches_track_skips_and_force(workdir, reference, capsys, monkeypatch):
    from sam2long.models import loading

    loads = []
    real_load = loading.load_model
    monkeypatch.setattr(loading, "load_model", lambda *a, **k: loads.append(a[0]) or real_load(*a, **k))
    job = write_job(workdir)
    rc, events, err = batch([job, "--json"], capsys)
    assert rc == 0, err
    assert kinds(events) == [("sh010", "done"), ("sh020", "done"), ("sh030", "done")]
    assert len(loads) == 1  # one model load for the three shots
    for s in SHOTS:
        same_outputs(workdir / s["output"], reference / s["name"])
    assert leftovers(workdir) == []
    assert events[-1]["summary"]["done"] == 3
    done = {e["shot"]: e for e in events if e.get("event") == "done"}
    assert done["sh010"]["frames"] == N and done["sh030"]["frames"] == 4  # reverse from frame 3
    record = jobs.read_record(workdir / "out/sh020")
    assert record["key"]["job"]["source"]["path"] == str(workdir / "b") and record["result"]["frames"] == N
    assert "shot" in err and "sh030" in err  # the table (on stderr with --json)

    stamp = {s["name"]: (workdir / s["output"] / jobs.RECORD).stat().st_mtime_ns for s in SHOTS}
    rc, events, _ = batch([job, "--json"], capsys)
    assert rc == 0 and kinds(events) == [("sh010", "skipped"), ("sh020", "skipped"), ("sh030", "skipped")]

    # a changed input redoes its shot only; --force redoes every shot
    b = workdir / "b" / "plate.1003.png"
    os.utime(b, ns=(b.stat().st_atime_ns, b.stat().st_mtime_ns + 10**9))
    rc, events, _ = batch([job, "--json"], capsys)
    assert rc == 0 and kinds(events) == [("sh010", "skipped"), ("sh020", "done"), ("sh030", "skipped")]
    rc, events, _ = batch([job, "--json", "--force"], capsys)
    assert rc == 0 and kinds(events) == [("sh010", "done"), ("sh020", "done"), ("sh030", "done")]
    for s in SHOTS:
        assert (workdir / s["output"] / jobs.RECORD).stat().st_mtime_ns > stamp[s["name"]]
        same_outputs(workdir / s["output"], reference / s["name"])
    assert leftovers(workdir) == []


def test_planted_link_at_the_old_partial_name_is_not_written_through(workdir, capsys, tmp_path_factory):
    outside = tmp_path_factory.mktemp("outside")
    (outside / "keep.txt").write_text("precious")
    out = workdir / "out"
    out.mkdir()
    planted = out / f"sh010.partial-{os.getpid()}"  # the name a try used to write into
    planted.symlink_to(outside, target_is_directory=True)
    rc, events, err = batch([write_job(workdir, SHOTS[:1]), "--json"], capsys)
    assert rc == 0 and kinds(events) == [("sh010", "done")], err
    assert sorted(p.name for p in outside.iterdir()) == ["keep.txt"] and (outside / "keep.txt").read_text() == "precious"
    result = out / "sh010"
    assert not result.is_symlink() and (result / jobs.RECORD).is_file() and len(list((result / "1").iterdir())) == N
    mask = os.umask(0o077)
    os.umask(mask)
    assert (result.stat().st_mode & 0o777) == 0o777 & ~mask  # as mkdir makes it, not mkdtemp's 0700
    assert planted.is_symlink() and sorted(p.name for p in out.iterdir()) == sorted([planted.name, "sh010"])


def test_record_replaces_a_planted_link_instead_of_writing_through_it(tmp_path):
    victim = tmp_path / "victim.txt"
    victim.write_text("precious")
    folder = tmp_path / "out"
    folder.mkdir()
    (folder / jobs.RECORD).symlink_to(victim)
    job = TrackJob(Source("v.mp4"), (), ModelSettings("ckpt"), OutputSettings(str(folder)))
    shot = jobs.BatchShot(index=0, name="sh010", job=job, key={"argv": []})
    jobs.write_record(folder, shot, {"frames": 5})
    assert victim.read_text() == "precious" and not (folder / jobs.RECORD).is_symlink()
    assert jobs.read_record(folder) == {"key": {"argv": []}, "result": {"frames": 5}}
    assert os.listdir(folder) == [jobs.RECORD]  # no temporary file left


def test_failed_try_is_retried_then_reported(workdir, capsys, monkeypatch):
    real = shot_runner.run
    tries = []

    def flaky(job, **kw):  # a job checked by the shot runner, writing to its temporary folder
        tries.append(job.job.source.path)
        if job.job.source.path.endswith("c.mp4"):
            (job.out / "1").mkdir(parents=True)  # something half-written, then a crash
            raise RuntimeError("GPU fell off the bus")
        return real(job, **kw)

    monkeypatch.setattr(shot_runner, "run", flaky)
    job = write_job(workdir)
    rc, events, err = batch([job, "--json", "--retries", "2"], capsys)
    assert rc == 1
    assert kinds(events) == [("sh010", "done"), ("sh020", "done"), ("sh030", "failed"),
                             ("sh030", "retry"), ("sh030", "retry")]
    assert sum(t.endswith("c.mp4") for t in tries) == 3
    assert "GPU fell off the bus" in err and "failed" in err
    assert not (workdir / "out/sh030").exists() and leftovers(workdir) == []
    # the next run does only what is left
    monkeypatch.setattr(shot_runner, "run", real)
    rc, events, _ = batch([job, "--json"], capsys)
    assert rc == 0 and kinds(events) == [("sh010", "skipped"), ("sh020", "skipped"), ("sh030", "done")]


@pytest.mark.parametrize(
    "change,words",
    [
        (lambda s: s[1].update(pathway=2), ["shot 2 (sh020)", "unknown key 'pathway'"]),
        (lambda s: s[0].update(input="nope.mp4"), ["shot 1 (sh010)", "input", "nope.mp4", "does not exist"]),
        (lambda s: s[2]["prompts"][0].update(point=[30]), ["shot 3 (sh030)", "prompts[0]", "--point"]),
        (lambda s: s[2]["prompts"].append({"frame": 1, "point": [99, 10]}), ["shot 3 (sh030)", "outside"]),
        (lambda s: s[1]["prompts"][1].update(mask="none.png"), ["shot 2 (sh020)", "prompts[1].mask"]),
        (lambda s: s[0]["prompts"][0].update(lable=0), ["shot 1 (sh010)", "prompts[0].lable"]),
        (lambda s: s[0].update(both=True, reverse=True), ["shot 1 (sh010)", "--reverse"]),
        (lambda s: s[2].update(output="out/sh010"), ["shot 3 (sh030)", "also the output of shot 1"]),
        (lambda s: s[0].update(json=True), ["shot 1 (sh010)", "`json` is not set per shot"]),
        (lambda s: s[0].update(pathways=0), ["shot 1 (sh010)", "pathways", "1 or more"]),
    ],
)
def test_bad_job_file_refused_before_any_output(workdir, capsys, change, words):
    shots = json.loads(json.dumps(SHOTS))
    change(shots)
    job = write_job(workdir, shots, name="job.json")
    rc, _, err = batch([job], capsys)
    assert rc == 2 and len(err.strip().splitlines()) == 1, err
    for w in words:
        assert w in err
    assert not (workdir / "out").exists()


@pytest.mark.parametrize(
    "change,words",
    [
        (lambda s: s[0]["prompts"][1].update(label=float("inf")), ["shot 1 (sh010)", "prompts[1]", "finite"]),
        (lambda s: s[0]["prompts"][0].update(point=[float("nan"), 3]), ["shot 1 (sh010)", "prompts[0]", "finite"]),
        (lambda s: s[1]["prompts"][0].update(box=[8, 8, float("inf"), 28]), ["shot 2 (sh020)", "prompts[0]", "finite"]),
        (lambda s: s[0]["prompts"][1].update(label=2), ["shot 1 (sh010)", "prompts[1]", "label must be 1"]),
        (lambda s: s[0]["prompts"][1].update(label=-1), ["shot 1 (sh010)", "prompts[1]", "label must be 1"]),
        (lambda s: s[2].update(uncertainty=float("nan")), ["shot 3 (sh030)", "uncertainty", "finite"]),
        (lambda s: s[2].update(iou_threshold=7), ["shot 3 (sh030)", "iou_threshold"]),
    ],
)
def test_non_finite_numbers_in_a_job_file_exit_2(workdir, capsys, change, words):
    shots = json.loads(json.dumps(SHOTS))
    change(shots)
    job = write_job(workdir, shots)  # YAML: .inf, .nan as a pipeline tool writes them
    assert any(w in job.read_text() for w in (".inf", ".nan", "2", "-1", "7"))
    rc, _, err = batch([job], capsys)
    assert rc == 2 and len(err.strip().splitlines()) == 1 and "Traceback" not in err, err
    for w in words:
        assert w in err
    assert not (workdir / "out").exists()


def test_check_and_foreign_output(workdir, capsys):
    job = write_job(workdir)
    rc, _, err = batch([job, "--check"], capsys)
    assert rc == 0 and "3 shot(s) OK, 0 already done" in err and not (workdir / "out").exists()
    (workdir / "out/sh010").mkdir(parents=True)
    (workdir / "out/sh010/notes.txt").write_text("mine")
    rc, _, err = batch([job, "--check"], capsys)
    assert rc == 2 and "not written by `sam2long batch`" in err and "--force" in err
    rc, _, err = batch([job, "--check", "--force"], capsys)  # --force replaces only what sam2long wrote
    assert rc == 2 and "move it away" in err


# --- batch never destroys what it did not write -----------------------------------------


@pytest.fixture
def copies(media, tmp_path):
    """A job folder holding copies of the media (not links: these tests try to destroy them)."""
    for p in media.iterdir():
        if p.is_dir() and p.name != "ref":
            shutil.copytree(p, tmp_path / p.name)
        elif p.is_file():
            shutil.copy2(p, tmp_path / p.name)
    return tmp_path


def listing(folder: Path) -> dict:
    """Every file, folder and link under `folder` (links not followed) with its size and time."""
    found = {}
    for top, dirs, files in os.walk(folder):
        for name in dirs + files:
            p = Path(top) / name
            st = p.lstat()
            found[p.relative_to(folder).as_posix()] = (p.is_symlink(), st.st_size, st.st_mtime_ns)
    return found


def _shots(**outputs):
    """SHOTS with some outputs (or other keys) changed: {"1": {"output": "b"}} -> shot 1."""
    shots = json.loads(json.dumps(SHOTS))
    for k, change in outputs.items():
        shots[int(k[1:]) - 1].update(change)
    return shots


def _plate_link(d):
    (d / "plates_link").symlink_to(d / "b")


def _input_link(d):
    (d / "store").mkdir()
    shutil.move(d / "a.mp4", d / "store" / "a.mp4")
    (d / "alias.mp4").symlink_to(d / "store" / "a.mp4")


@pytest.mark.parametrize("setup,shots,job_name,output,protected", [
    # output = the input plate folder (with --force the plates were deleted)
    (None, _shots(s2={"output": "b"}), "job.yaml", "b", "b"),
    # output = the job file's folder (with --force the job file and every shot were deleted)
    (None, _shots(s1={"output": "."}), "job.yaml", ".", "job.yaml"),
    # one output inside another (shot 1's finished output was deleted when shot 2 published)
    (None, _shots(s1={"output": "mattes/sh010"}, s2={"output": "mattes"}), "job.yaml", "mattes", "mattes/sh010"),
    # output = another shot's input folder (with --force that input was gone before its shot ran)
    (None, _shots(s3={"output": "b"}), "job.yaml", "b", "b"),
    (None, _shots(s1={"output": "b_obj2.png"}), "job.yaml", "b_obj2.png", "b_obj2.png"),  # a mask file
    (None, _shots(s3={"output": "random_tiny.pt"}), "job.yaml", "random_tiny.pt", "random_tiny.pt"),
    (None, _shots(s1={"output": "."}), "jobs/job.yaml", "jobs", "jobs/job.yaml"),  # holds the job file
    (_plate_link, _shots(s1={"output": "plates_link"}), "job.yaml", "b", "b"),  # through a link
    (_input_link, _shots(s1={"input": "alias.mp4", "output": "store"}), "job.yaml", "store", "store/a.mp4"),
    # inside the folder of an input given as a pattern
    (None, _shots(s2={"input": "b/plate.####.png", "output": "b/mattes"}), "job.yaml", "b/mattes", "b"),
], ids=["plate-folder", "job-folder", "nested-outputs", "other-shots-input", "mask", "checkpoint",
        "holds-job-file", "link-to-plates", "input-links-into-output", "inside-pattern-folder"])
def test_output_over_what_the_job_reads_is_refused(copies, capsys, setup, shots, job_name, output, protected):
    d = copies
    if setup:
        setup(d)
    job_dir = (d / job_name).parent
    job_dir.mkdir(exist_ok=True)
    if job_dir != d:  # the job file in a subfolder: its relative paths start one folder up
        shots = [{**s, "input": f"../{s['input']}"} | {"prompts": [
            {**pr, "mask": f"../{pr['mask']}"} if "mask" in pr else pr for pr in s["prompts"]]} for s in shots]
        defaults = {"checkpoint": "../random_tiny.pt", "image_size": SIZE, "device": "cpu"}
    else:
        defaults = None
    job = write_job(job_dir, shots, defaults=defaults, name=Path(job_name).name)
    before = listing(d)
    for force in ([], ["--force"]):
        rc, _, err = batch([job, *force], capsys)
        assert rc == 2 and len(err.strip().splitlines()) == 1, err
        out, kept = (d / output).resolve(), (d / protected).resolve()
        assert f"output {out} " in err and f"({kept})" in err, err
        assert listing(d) == before  # nothing written, nothing deleted, the job file still there


def test_force_replaces_only_what_sam2long_wrote(copies, capsys, monkeypatch):
    d = copies
    job = write_job(d, SHOTS[:1])
    (d / "out/sh010").mkdir(parents=True)
    (d / "out/sh010/notes.txt").write_text("mine")
    before = listing(d)
    rc, _, err = batch([job, "--force"], capsys)
    assert rc == 2 and len(err.strip().splitlines()) == 1
    assert str(d / "out/sh010") in err and "move it away" in err
    assert listing(d) == before

    # a folder that appears at the output while the shot runs is kept too: the shot fails
    (d / "out/sh010/notes.txt").unlink()
    real = shot_runner.run

    def someone_writes_there(job, **kw):
        (d / "out/sh010/notes.txt").write_text("mine")
        return real(job, **kw)

    monkeypatch.setattr(shot_runner, "run", someone_writes_there)
    rc, events, err = batch([job, "--force", "--json"], capsys)
    assert rc == 1 and kinds(events) == [("sh010", "failed")]  # not retried: it would fail again
    assert "not written by sam2long" in err and "move it away" in err
    assert os.listdir(d / "out/sh010") == ["notes.txt"] and leftovers(d) == []

    # our own output: --force redoes it
    (d / "out/sh010/notes.txt").unlink()
    monkeypatch.setattr(shot_runner, "run", real)
    assert batch([job], capsys)[0] == 0
    stamp = (d / "out/sh010" / jobs.RECORD).stat().st_mtime_ns
    rc, events, _ = batch([job, "--force", "--json"], capsys)
    assert rc == 0 and kinds(events) == [("sh010", "done")]
    assert (d / "out/sh010" / jobs.RECORD).stat().st_mtime_ns > stamp


def test_only_our_temporary_folders_are_removed(copies, capsys):
    d = copies
    job = write_job(d, SHOTS[:1])
    out = d / "out"

    def theirs():  # all but the output and `out` itself (its time changes as folders come and go)
        return {k: v for k, v in listing(d).items() if k != "out" and k.split("/")[:2] != ["out", "sh010"]}

    (out / "elsewhere").mkdir(parents=True)
    (out / "elsewhere" / jobs.RECORD).write_text("{}")  # looks like ours: reached only through the link
    for name in ("sh010.partial-123", "sh010.old-backup", "sh010.partial-12x"):  # named like ours, are not
        (out / name).mkdir()
        (out / name / "keep.txt").write_text("mine")
    (out / "sh010.old-7").symlink_to(out / "elsewhere")  # a link is never followed nor removed
    before = theirs()
    # an earlier try of ours, stopped half-way: it holds our in-progress record
    (out / "sh010.partial-99/1").mkdir(parents=True)
    jobs.mark_in_progress(out / "sh010.partial-99", "host:99")
    (out / "sh010.partial-98").mkdir()  # one stopped before it was marked: empty
    shot_runner.remove_partials(out / "sh010")
    assert theirs() == before
    (out / "sh010.partial-97").mkdir()
    jobs.mark_in_progress(out / "sh010.partial-97", "host:97")
    rc, events, err = batch([job, "--json"], capsys)
    assert rc == 0 and kinds(events) == [("sh010", "done")], err
    assert theirs() == before and jobs.is_done(jobs.load_job(job)[0])


def test_input_as_a_pattern(copies, capsys):
    shots = _shots(s2={"input": "b/plate.####.png"})[1:2]
    job = write_job(copies, shots)
    rc, _, err = batch([job, "--check"], capsys)
    assert rc == 0, err
    files = jobs.load_job(job)[0].key["files"][0]["files"]
    assert [f[0] for f in files] == [f"plate.{1001 + i}.png" for i in range(N)]
    rc, _, err = batch([write_job(copies, _shots(s2={"input": "b/shot.####.png"})[1:2]), "--check"], capsys)
    assert rc == 2 and "input" in err and "shot.####.png" in err and len(err.strip().splitlines()) == 1, err


def test_job_file_is_read_into_typed_jobs_without_argv(workdir, monkeypatch):
    import argparse
    import ast

    tree = ast.parse(Path(jobs.__file__).read_text())
    imported = {a.name for n in ast.walk(tree) if isinstance(n, (ast.Import, ast.ImportFrom)) for a in n.names}
    imported |= {n.module for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) and n.module}
    assert "argparse" not in imported and "cli" not in imported

    def no_parser(*args, **kw):
        raise AssertionError("a job file was read through argparse")

    monkeypatch.setattr(argparse.ArgumentParser, "parse_args", no_parser)
    monkeypatch.setattr(argparse.ArgumentParser, "parse_known_args", no_parser)
    shots = jobs.load_job(write_job(workdir))
    assert [type(s.job) for s in shots] == [TrackJob] * 3
    assert all(set(s.key) == {"sam2long", "job", "files"} for s in shots)  # no argv in the record either
    sh020, sh030 = shots[1].job, shots[2].job
    assert sh030.direction == "backward" and sh030.tree.plain_tracker
    assert sh030.prompts == (Prompt(3, 3, "point", (30.0, 18.0, 1)),)
    # a prompt without a frame is on the shot's first frame, and goes first (as on the command line)
    assert sh020.prompts == (Prompt(2, None, "mask", str(workdir / "b_obj2.png")),
                             Prompt(1, 1002, "box", (8.0, 8.0, 30.0, 28.0)))
    assert sh020.tree.pathways == 2 and not sh020.output.preview and sh020.output.folder == str(workdir / "out/sh020")


# A value other than the default for each track option: (in a job file, on the command line).
OPTION_EXAMPLES = {
    "start": (1002, "1002"), "end": (1004, "1004"), "reverse": (True, None), "both": (True, None),
    "colorspace": ("ACEScg", "ACEScg"), "ocio": ("ocio://default", "ocio://default"),
    "checkpoint": ("sam2.1_hiera_small", "sam2.1_hiera_small"), "pathways": (2, "2"),
    "iou-threshold": (0.5, "0.5"), "uncertainty": (1.5, "1.5"), "no-tree": (True, None), "max-lag": (4, "4"),
    "format": ("exr", "exr"), "soft": (True, None), "names": ("1=car", "1=car"), "device": ("cuda", "cuda"), "precision": ("fp16", "fp16"),
    "no-preview": (True, None), "image-size": (512, "512"),
}


def _fields(job) -> dict:
    """The job's settings as {"tree.pathways": 3, ...}."""
    from dataclasses import asdict

    flat = {}
    for name, value in asdict(job).items():
        for sub, v in (value.items() if isinstance(value, dict) else [(None, value)]):
            flat[name if sub is None else f"{name}.{sub}"] = v
    return flat


def _changed(base, job) -> dict:
    a, b = _fields(base), _fields(job)
    return {k: b[k] for k in b if a[k] != b[k]}


def test_job_file_takes_every_track_option_as_the_command_line_does(workdir):
    from sam2long.app.track_options import TRACK_OPTIONS

    assert set(OPTION_EXAMPLES) == {o.name for o in TRACK_OPTIONS}  # a new option needs an example here
    shot = {"input": "b", "output": "out/x", "prompts": [{"frame": 1003, "point": [15, 18]}]}
    prompt = ["--frame", "1003", "--point", "15,18"]

    def from_file(**options):
        return jobs.load_job(write_job(workdir, [{**shot, **options}], name="job.json"))[0].job

    def from_command_line(*extra):
        args = cli.build_parser().parse_args(["track", "b", "--checkpoint", "c", "--out", "o", *prompt, *extra])
        return cli.job_from_args(args)

    for option in TRACK_OPTIONS:
        # names are Cryptomatte's: compared on shots of that format
        needs = {"names": ("cryptomatte", ["--format", "cryptomatte"])}.get(option.name)
        file_extra, cli_extra = ({"format": needs[0]}, needs[1]) if needs else ({}, [])
        file_base, cli_base = from_file(**file_extra), from_command_line(*cli_extra)
        value, text = OPTION_EXAMPLES[option.name]
        by_cli = _changed(cli_base, from_command_line(*cli_extra, f"--{option.name}",
                                                      *([] if text is None else [text])))
        assert by_cli, option.name  # the example is not the default
        for key in {option.name, option.name.replace("-", "_"), *option.aliases}:
            assert _changed(file_base, from_file(**file_extra, **{key: value})) == by_cli, key


def test_option_aliases_are_shot_keys(workdir):
    # `no-tree` / `no_tree` / `sam2` name one switch: the same job as `sam2: true`
    shots = [{k: v for k, v in SHOTS[2].items() if k != "sam2"} | {key: True, "output": f"out/{i}"}
             for i, key in enumerate(["no-tree", "no_tree", "sam2"])]
    got = [s.job.writing_to("o") for s in jobs.load_job(write_job(workdir, shots))]
    assert got[0].tree.plain_tracker and got[0] == got[1] == got[2]


def test_engine_options_refused_clearly(workdir, capsys, monkeypatch):
    job = write_job(workdir)
    rc, _, err = batch([job, "--workers", "2"], capsys)
    assert rc == 2 and "--engine ray" in err
    rc, _, err = batch([job, "--ray-dashboard"], capsys)
    assert rc == 2 and "--engine ray" in err
    rc, _, err = batch([job, "--engine", "ray", "--ray-address", "auto", "--ray-dashboard"], capsys)
    assert rc == 2 and "--ray-dashboard is for the local Ray" in err
    monkeypatch.setitem(__import__("sys").modules, "ray", None)  # as if Ray were not installed
    rc, _, err = batch([job, "--engine", "ray"], capsys)
    assert rc == 2 and "needs Ray: pip install" in err and len(err.strip().splitlines()) == 1
    assert not (workdir / "out").exists()


def test_in_process_run_does_not_import_ray(workdir, tmp_path):
    import subprocess
    import sys

    job = write_job(workdir, shots=SHOTS[:1])
    code = ("import sys; from sam2long.app import cli; rc = cli.main(['batch', sys.argv[1], '--quiet']); "
            "assert 'ray' not in sys.modules, 'ray imported'; sys.exit(rc)")
    env = {**os.environ, "PYTHONPATH": str(Path(cli.__file__).parents[2]), "OMP_NUM_THREADS": "1"}
    p = subprocess.run([sys.executable, "-c", code, str(job)], capture_output=True, text=True, env=env, timeout=300)
    assert p.returncode == 0, p.stderr
    assert "sh010" in p.stdout and "done" in p.stdout  # the table


# --- Ray --------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def ray_cluster():
    """The local Ray that `sam2long batch --engine ray` starts, with 2 CPUs and a small store."""
    import importlib.util

    if importlib.util.find_spec("ray") is None:
        pytest.skip("Ray is not installed")
    ray = ray_engine.import_ray(local=True)
    context = ray_engine.start_local_ray(ray, num_cpus=2, object_store_memory=80 * 2**20, logging_level="ERROR")
    yield ray, context
    ray.shutdown()


def _descendants(pid: int) -> set[int]:
    children = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        children.setdefault(int(fields[1]), []).append(int(stat.parent.name))
    found, todo = set(), [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            found.add(child)
            todo.append(child)
    return found


def _listening(pids) -> list:
    """The local address of every listening TCP socket held by one of `pids` (Linux /proc)."""
    import ipaddress

    inodes = set()
    for pid in pids:
        try:
            fds = list(Path(f"/proc/{pid}/fd").iterdir())
        except OSError:
            continue
        for fd in fds:
            try:
                target = os.readlink(fd)
            except OSError:
                continue
            if target.startswith("socket:["):
                inodes.add(target[len("socket:["):-1])
    found = []
    for table in ("tcp", "tcp6"):
        for line in Path(f"/proc/net/{table}").read_text().splitlines()[1:]:
            fields = line.split()
            address, state, inode = fields[1].split(":")[0], fields[3], fields[9]
            if state == "0A" and inode in inodes:  # 0A: LISTEN
                raw = bytes.fromhex(address)  # 32-bit words in host (little-endian) order
                ip = ipaddress.ip_address(b"".join(raw[k:k + 4][::-1] for k in range(0, len(raw), 4)))
                found.append(ip.ipv4_mapped if ip.version == 6 and ip.ipv4_mapped else ip)
    return found


@pytest.mark.skipif(not Path("/proc/net/tcp").exists(), reason="reads the sockets from Linux's /proc")
def test_local_ray_listens_on_loopback_only(ray_cluster):
    ray, context = ray_cluster
    assert ray.get_runtime_context().gcs_address.startswith("127.0.0.1:")
    assert [n["NodeManagerAddress"] for n in ray.nodes()] == ["127.0.0.1"]
    assert not context.dashboard_url
    assert ray.get(ray.remote(num_cpus=0)(lambda: os.getpid()).remote()) != os.getpid()  # a worker is up
    addresses = _listening({os.getpid(), *_descendants(os.getpid())})
    assert len(addresses) >= 4  # this driver, the GCS, the raylet, a worker (and Ray's agents)
    assert all(a.is_loopback for a in addresses), addresses


def test_ray_two_workers_identical(ray_cluster, workdir, reference, capsys):
    rc, events, err = batch([write_job(workdir), "--engine", "ray", "--workers", "2", "--json"], capsys)
    assert rc == 0, err
    assert kinds(events) == [("sh010", "done"), ("sh020", "done"), ("sh030", "done")]
    assert len({e["worker"] for e in events if e.get("event") == "done"}) == 2
    for s in SHOTS:
        same_outputs(workdir / s["output"], reference / s["name"])
    assert leftovers(workdir) == []


def test_ray_worker_killed_mid_shot(ray_cluster, workdir, reference, capsys):
    """Kill the process of the worker tracking sh020 once its temporary output exists
    (the model is loaded and tracking has begun: the folder is made just before)."""
    out = workdir / "out"
    killed = []

    def killer():
        deadline = time.time() + 120
        while time.time() < deadline and not killed:
            for partial in out.glob("sh020.partial-*") if out.exists() else []:
                try:  # the try's folder records its worker, "host:pid", while the shot runs
                    record = json.loads((partial / jobs.RECORD).read_text())
                except (OSError, ValueError):
                    continue  # not written yet
                pid = int(record["in_progress"].rsplit(":", 1)[1])
                os.kill(pid, signal.SIGKILL)
                killed.append(pid)
                break
            time.sleep(0.002)

    t = threading.Thread(target=killer, daemon=True)
    t.start()
    rc, events, err = batch([write_job(workdir), "--engine", "ray", "--workers", "2", "--json"], capsys)
    t.join(timeout=5)
    assert killed, "the shot finished before it could be killed"
    assert rc == 0, err
    retry = [e for e in events if e.get("event") == "retry"]
    assert [e["shot"] for e in retry] == ["sh020"] and "worker died" in retry[0]["error"]
    assert retry[0]["worker"].endswith(f":{killed[0]}")
    assert kinds(events) == [("sh010", "done"), ("sh020", "done"), ("sh020", "retry"), ("sh030", "done")]
    for s in SHOTS:
        same_outputs(out.parent / s["output"], reference / s["name"])
    assert leftovers(workdir) == []


def test_cryptomatte_from_a_job_file(workdir, capsys):
    """`format: cryptomatte` and `names` in a job file: one EXR per plate frame, objects by name."""
    api = pytest.importorskip("cryptomatte_api")
    shot = {**SHOTS[1], "format": "cryptomatte", "names": "1=box, 2=masked"}
    rc, _, err = batch([write_job(workdir, [shot]), "--quiet"], capsys)
    assert rc == 0, err
    out = workdir / "out" / "sh020"
    exrs = sorted(p.name for p in out.glob("*.exr"))
    assert exrs == [f"{f}.exr" for f in range(1001, 1001 + N)]
    (matte,) = api.Cryptomatte.load(str(out / exrs[-1]))
    assert set(dict(matte.metadata().manifest().mapping_hex())) == {"box", "masked"}
