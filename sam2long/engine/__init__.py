"""The engine: the memory tree's rules, the memory store, the per-frame tree step, the
tracker, the batched inference core, memory attention and the model-input resize; the
tracker's snapshots (resuming a run), corrections pushed backward and the cache of runs kept
for resuming.

It drives a `models.LoadedModel` through its family and reads frames from a
`frames.FrameSource`; it reads no checkpoint and no media file itself (snapshots are its own files).
"""
