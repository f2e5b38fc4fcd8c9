"""Helpers the test modules share (not fixtures)."""

import duhl_cl as dc
from duhl_cl.device.discovery import host_cpu_profile


def edited_profile(directory, replacements, name="edited.toml", base=None):
    """A copy of a shipped profile (default: the host CPU's, pocl-cpu or intel-cpu) with each
    (old, new) text replaced, written to ``directory / name``; every ``old`` must be in the
    profile (so an edit cannot silently miss)."""
    text = open(dc.load_profile(base or host_cpu_profile()).path).read()
    for old, new in replacements:
        assert old in text, old
        text = text.replace(old, new)
    path = directory / name
    path.write_text(text)
    return path
