"""The front ends on the command line: `sam2long track`, `demo` and `batch`."""
