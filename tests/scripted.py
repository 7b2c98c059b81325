"""A scripted stand-in for the inference core, to test the tree end to end.

The script decides, per frame and per pathway, the 3 predicted IoUs and the
object logit. A pathway is identified by the candidates it chose so far (a tuple
of candidate indices): every memory this core writes holds the number of its path
in a table, and each output mask is that number (plus one) as a constant logit, so
tests can tell exactly which pathway an emitted frame came from.
"""

import torch

from sam2long.engine.core import Decoded
from sam2long.engine.memory import MemoryEntry


class ScriptedCore:
    num_maskmem = 7
    max_ptrs = 16
    max_prompt_frames = None
    image_size = 32
    hidden_dim = 8

    def __init__(self, script):
        self.script = script  # script(frame, path) -> (ious[3], object_logit)
        self.table = [()]  # path number -> path
        self.numbers = {(): 0}
        self.track_calls = []  # (frame, number of distinct pathways computed)
        self.plans = []  # (frame, [MemoryPlan]) as handed to the network
        self.node_codes = {}

    def preprocess(self, frame):
        return frame

    def encode_image(self, image):
        return image

    def prompt(self, t, ff, inputs):
        mem = torch.zeros(1, 2, 2, dtype=torch.float64)
        return [(torch.full((4, 4), -5.0), MemoryEntry(t, torch.zeros(8), 10.0, 1.0, mem)) for _ in inputs]

    def _path_of(self, plan):
        if len(plan.spatial) == 1:  # only the prompt: the seed frame
            return ()
        return self.table[int(plan.spatial[-1][0].flatten()[0])]

    def track(self, ff, plans, shot_length=None):
        t = self.frame_of(ff)
        self.track_calls.append((t, len(plans)))
        self.plans.append((t, plans))
        ious, logits, paths = [], [], []
        for plan in plans:
            path = self._path_of(plan)
            row, logit = self.script(t, path)
            ious.append(list(row))
            logits.append(float(logit))
            paths.append(path)
        self._last = (t, paths)
        b = len(plans)
        return Decoded(
            lowres=torch.zeros(b, 3, 4, 4),
            tokens=torch.zeros(b, 3, 8),
            object_logits=torch.tensor(logits).view(b, 1),
            ious_cpu=ious,
            object_logits_cpu=logits,
        )

    def commit(self, ff, decoded, picks):
        t, paths = self._last
        mems, ptrs = [], []
        for unit, j in picks:
            path = paths[unit] + (j,)
            if path not in self.numbers:
                self.numbers[path] = len(self.table)
                self.table.append(path)
            number = self.numbers[path]
            mems.append(torch.full((1, 2, 2), float(number), dtype=torch.float64))
            ptrs.append(torch.zeros(8))
            decoded.lowres[unit, j] = number + 1.0  # the output names its path
        return torch.stack(ptrs), mems

    def path_of_output(self, logit):
        """The path an emitted mask came from (None for a prompt frame)."""
        value = float(logit.flatten()[0])
        return None if value < 0 else self.table[int(round(value)) - 1]

    @staticmethod
    def frame_of(ff):
        return int(ff)


def frames(n):
    """A frame source whose frames are their own indices."""

    class Source:
        height, width, first_index = 8, 8, 0

        def __len__(self):
            return n

        def frames(self, indices):
            for i in indices:
                yield i, i

    return Source()
