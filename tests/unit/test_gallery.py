"""The gallery (issue 17, item 5): docs/gallery/ holds one ladder, one timeline and the
topology of each lab, small, embedded in its README; the command's size rule."""

from __future__ import annotations

import re
import struct
from pathlib import Path

from testbed.results.figure import new_figure
from testbed.results.gallery import MAX_BYTES, lab_scenarios, save_small

ROOT = Path(__file__).resolve().parents[2]
GALLERY = ROOT / "docs" / "gallery"
REGENERATE = "regenerate it: testbed gallery (as root), see docs/gallery/README.md"


def test_every_lab_has_its_three_pictures_embedded() -> None:
    text = (GALLERY / "README.md").read_text()
    embedded = set(re.findall(r"!\[[^]]*\]\(([^)]+)\)", text))
    labs = [p.parent.name for p in lab_scenarios(ROOT)]
    assert labs
    for lab in labs:
        for kind in ("ladder", "timeline", "topology"):
            name = f"{lab}-{kind}.png"
            path = GALLERY / name
            assert path.exists(), f"docs/gallery lacks {name}: {REGENERATE}"
            assert name in embedded, f"docs/gallery/README.md does not show {name}"
            data = path.read_bytes()
            assert data[:8] == b"\x89PNG\r\n\x1a\n"
            assert len(data) <= MAX_BYTES, f"{name}: {len(data)} bytes"
            width, _ = struct.unpack(">II", data[16:24])
            assert width >= 500, f"{name} is too small to read ({width} px)"
    assert "Readability problems" not in text  # the command found none when it drew them
    for name in embedded:
        assert (GALLERY / name).exists(), f"docs/gallery/README.md shows a missing {name}"


def test_pictures_are_saved_small_enough(tmp_path: Path) -> None:
    fig = new_figure(7, 9)
    ax = fig.add_axes((0, 0, 1, 1))
    for i in range(400):  # busy enough to be large at full resolution
        ax.text((i % 20) / 20, (i // 20) / 20, f"label {i}", fontsize=7, color=f"C{i % 10}")
    full = save_small(fig, tmp_path / "full.png", max_bytes=10**9)
    size = save_small(fig, tmp_path / "p.png", max_bytes=full * 3 // 4)
    assert size == (tmp_path / "p.png").stat().st_size <= full * 3 // 4
