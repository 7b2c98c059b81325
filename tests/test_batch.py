"""`sam2long batch`: a job file of three tiny shots, in-process and on a local Ray.

A random-weight SAM 2.1 tiny network at 64 px, saved as a checkpoint file, and three
5-frame shots (two videos, one folder of frames) keep every run to seconds. The
reference for each shot is `sam2long track` run on the same arguments.
"""

from __future__ import annotations

import json
import os
import signal
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import yaml
from conftest import save_checkpoint, small_net, write_mp4
from PIL import Image

from sam2long import cli, jobs

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
    assert record["key"]["argv"][0] == str(workdir / "b") and record["result"]["frames"] == N
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


def test_failed_try_is_retried_then_reported(workdir, capsys, monkeypatch):
    from sam2long import batch as batch_module

    real = cli.run_track
    tries = []

    def flaky(args, **kw):
        tries.append(args.video)
        if args.video.endswith("c.mp4"):
            (Path(args.out) / "1").mkdir(parents=True)  # something half-written, then a crash
            raise RuntimeError("GPU fell off the bus")
        return real(args, **kw)

    monkeypatch.setattr(batch_module.cli, "run_track", flaky)
    job = write_job(workdir)
    rc, events, err = batch([job, "--json", "--retries", "2"], capsys)
    assert rc == 1
    assert kinds(events) == [("sh010", "done"), ("sh020", "done"), ("sh030", "failed"),
                             ("sh030", "retry"), ("sh030", "retry")]
    assert sum(t.endswith("c.mp4") for t in tries) == 3
    assert "GPU fell off the bus" in err and "failed" in err
    assert not (workdir / "out/sh030").exists() and leftovers(workdir) == []
    # the next run does only what is left
    monkeypatch.setattr(batch_module.cli, "run_track", real)
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


def test_check_and_foreign_output(workdir, capsys):
    job = write_job(workdir)
    rc, _, err = batch([job, "--check"], capsys)
    assert rc == 0 and "3 shot(s) OK, 0 already done" in err and not (workdir / "out").exists()
    (workdir / "out/sh010").mkdir(parents=True)
    (workdir / "out/sh010/notes.txt").write_text("mine")
    rc, _, err = batch([job, "--check"], capsys)
    assert rc == 2 and "not written by `sam2long batch`" in err and "--force" in err
    rc, _, err = batch([job, "--check", "--force"], capsys)
    assert rc == 0


def test_option_aliases_are_shot_keys(workdir):
    # `no-tree` / `no_tree` is --sam2's alias: the same track arguments as `sam2: true`
    shots = [{k: v for k, v in SHOTS[2].items() if k != "sam2"} | {key: True, "output": f"out/{i}"}
             for i, key in enumerate(["no-tree", "no_tree", "sam2"])]
    got = [vars(s.track_args("o")) for s in jobs.load_job(write_job(workdir, shots))]
    assert got[0]["sam2"] and got[0] == got[1] == got[2]


def test_engine_options_refused_clearly(workdir, capsys, monkeypatch):
    job = write_job(workdir)
    rc, _, err = batch([job, "--workers", "2"], capsys)
    assert rc == 2 and "--engine ray" in err
    monkeypatch.setitem(__import__("sys").modules, "ray", None)  # as if Ray were not installed
    rc, _, err = batch([job, "--engine", "ray"], capsys)
    assert rc == 2 and "needs Ray: pip install" in err and len(err.strip().splitlines()) == 1
    assert not (workdir / "out").exists()


def test_in_process_run_does_not_import_ray(workdir, tmp_path):
    import subprocess
    import sys

    job = write_job(workdir, shots=SHOTS[:1])
    code = ("import sys; from sam2long import cli; rc = cli.main(['batch', sys.argv[1], '--quiet']); "
            "assert 'ray' not in sys.modules, 'ray imported'; sys.exit(rc)")
    env = {**os.environ, "PYTHONPATH": str(Path(cli.__file__).parents[1]), "OMP_NUM_THREADS": "1"}
    p = subprocess.run([sys.executable, "-c", code, str(job)], capture_output=True, text=True, env=env, timeout=300)
    assert p.returncode == 0, p.stderr
    assert "sh010" in p.stdout and "done" in p.stdout  # the table


# --- Ray --------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def ray_cluster():
    ray = pytest.importorskip("ray")
    ray.init(num_cpus=2, include_dashboard=False, object_store_memory=80 * 2**20, logging_level="ERROR")
    yield ray
    ray.shutdown()


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
                pid = int(partial.name.rsplit("-", 1)[1])
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
