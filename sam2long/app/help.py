"""The help texts of `sam2long track`, `demo` and `batch`, and the one job-file example."""

JOB_FILE_EXAMPLE = """\
  defaults: {checkpoint: sam2.1_hiera_large, pathways: 3}
  shots:
    - input: shots/sh010/plate.mp4        # anything `sam2long track` reads
      output: mattes/sh010                # the layout `sam2long track --out` writes
      prompts:
        - {object: 1, frame: 0, point: [410, 220]}
        - {object: 1, frame: 0, point: [500, 300], label: 0}
        - {object: 2, frame: 40, box: [350, 120, 500, 400]}
        - {object: 3, frame: 0, mask: sh010_obj3.png}
    - {input: shots/sh020/plate, output: mattes/sh020, reverse: true,
       prompts: [{frame: 99, point: [640, 360]}]}
"""

TRACK_EPILOG = """\
prompts:
  Prompts are --point, --box and --mask. --frame N and --object ID set the frame
  and the object for the prompts that FOLLOW them, until the next --frame or
  --object; before any of them the frame is the shot's first frame and the
  object is 1. Several --point options for one frame and object are one click
  set (positive and negative clicks together); a --box may come with points on
  the same frame and object; a --mask stands alone on its frame and object.
  Coordinates are in pixels of the source frames: 0,0 is the top-left corner of
  a WxH frame and W,H its bottom-right corner, so 0 <= X <= W and 0 <= Y <= H.

  Two objects on two frames - object 1 (a click and a box) on frame 0, object 2
  (two positive clicks and a negative one) on frame 40:

    sam2long track shot.mp4 --checkpoint sam2.1_hiera_large --out masks \\
        --object 1 --frame 0 --point 410,220 --box 350,120,500,400 \\
        --object 2 --frame 40 --point 800,300 --point 820,360 --point 900,330,0

frame numbers:
  A video's frames are numbered from 0. An image sequence (plate.####.exr,
  plate.%04d.exr, plate.@@@@.exr, its folder or one of its files) keeps the
  numbers in its file names: --frame, --start and --end use them (plate.1001.exr
  is frame 1001) and the mattes carry them with the same padding.

output:
  OUT/<object id>/<frame number>.<ext>   one matte per object for every tracked
      frame (empty before an object's first prompt), at the source resolution,
      numbered with 5 digits for a video and the plate's padding for a sequence;
      --format png (8-bit, default), png16, tif16 or exr (one half-float channel
      "A"); hard 0 / full scale, or the model's probability with --soft.
  OUT/<frame number>.exr   with --format cryptomatte: one Cryptomatte EXR per frame
      holding every object with its soft coverage, named object_<id> or by --names.
  OUT/preview.mp4 shows all objects overlaid.

colour:
  Frames go to the network as 8-bit sRGB. Defaults (printed at the start):
  EXR and float TIFF are scene-linear Rec.709 (-> sRGB, clipped), DPX is Cineon
  log unless its header says otherwise, 8/16-bit PNG/TIFF/JPEG are sRGB.
  --colorspace NAME converts from that OCIO colour space instead (config:
  --ocio, else $OCIO, else OpenImageIO's built-in config).

tree:
  --pathways P keeps P alternative memory histories per object and picks the best
  one; --no-tree (also spelled --sam2, its older name) runs the model's own tracker
  for comparison: plain SAM 2 (one greedy history), or SAM 3's tracker for a SAM 3
  checkpoint.
  Raise --uncertainty or lower --iou-threshold when an object is lost after an
  occlusion; --max-lag K bounds how far the written masks trail the tracking.
"""

BATCH_EPILOG = """\
job file (YAML or JSON; relative paths are relative to the job file):

""" + JOB_FILE_EXAMPLE + """
  Any `sam2long track` option can be set in `defaults` or per shot, with its long
  name (`iou-threshold` or `iou_threshold`); a switch takes true or false. A prompt
  without `object` is for object 1; without `frame`, on the shot's first frame.
  `name` labels a shot in the progress and the table (default: its output).

engines:
  in-process (default): one shot after another in this process, each checkpoint
    loaded once.
  --engine ray: a local Ray started for the run, listening on 127.0.0.1 only
    (its dashboard only with --ray-dashboard), with --workers N (default one per
    GPU; without a GPU one per 2 cores, each with cores / N torch threads, or
    --threads), or an existing cluster with --ray-address ADDRESS (e.g. auto, or
    ray://head:10001). On a cluster, every node needs sam2long installed and the
    same paths to the inputs, the job file's folder and the outputs (a shared
    filesystem, as on a render farm).

failures:
  A shot writes into OUTPUT.partial-XXXX and is renamed to OUTPUT when complete, so a
  half-done shot never looks done. A shot that fails (or whose worker dies) is tried
  again, up to --retries times; a shot refused as bad input (exit code 2 of `sam2long
  track`) is not. A rerun skips shots whose output records the same inputs and
  settings (OUTPUT/sam2long_job.json); --force redoes them. The run ends with a table
  and exits 1 if any shot failed, 2 if the job file is refused, 130 on Ctrl-C.

refused, with or without --force (batch never destroys what it did not write):
  an output that is, holds or lies inside an input (a video, a frame folder, a
  pattern's folder), a mask file, the checkpoint, the job file or another shot's
  output (symlinks resolved); an existing output folder without sam2long_job.json.
  --force replaces only outputs that sam2long wrote.
"""
