"""The repository is self-contained: no code, document or card points at a file outside it."""

from __future__ import annotations

import subprocess

from conftest import ROOT

# .ci/run is the one place that knows where CI keeps the data set beside the checkout; this file
# names the patterns it looks for
ALLOWED = {".ci/run", "tests/test_repo.py"}


def test_no_tracked_file_cites_a_path_outside_the_repository():
    files = subprocess.run(["git", "-C", str(ROOT), "ls-files"], capture_output=True, text=True,
                           check=True).stdout.split()
    offenders = []
    for name in files:
        if name in ALLOWED or name.endswith((".tflite", ".png", ".h5", ".npz")):
            continue
        try:
            text = (ROOT / name).read_text()
        except (UnicodeDecodeError, FileNotFoundError):
            continue
        for n, line in enumerate(text.splitlines(), 1):
            if "../shared" in line or "ANCHORS.md" in line or "/work/main/" in line:
                offenders.append(f"{name}:{n}: {line.strip()[:100]}")
    assert not offenders, "\n".join(offenders)
