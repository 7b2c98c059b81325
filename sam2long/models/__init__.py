"""The networks and their files: the model handle, network families, loading,
checkpoint reading, the catalogue of official checkpoints and their download, and
SAM 3's tracker (`models.sam3`). Imports nothing of the engine or the media.
"""
