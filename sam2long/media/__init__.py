"""Media: frame sources (videos, folders, plates), shots, matte and preview writers, the
overlay and the track store. Imports only the shared modules; no model, no engine."""
