"""Catalog path rules (issue 12 items 9, 10): hidden names, one probe per file, no folder names."""

from __future__ import annotations

from pathlib import Path

import pytest

from streamd import catalog as catalog_module
from streamd.catalog import Catalog
from streamd.rtsp.errors import RtspError
from tests import mediagen


@pytest.fixture(scope="module")
def folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("catalog")
    (root / "sub").mkdir()
    mediagen.make_h264_aac_mp4(root / "sub" / "x.mp4", seconds=1)
    (root / ".dot").mkdir()
    (root / ".dot" / "y.mp4").write_bytes((root / "sub" / "x.mp4").read_bytes())
    (root / "sub" / ".z.mp4").write_bytes((root / "sub" / "x.mp4").read_bytes())
    (root / "link.mp4").symlink_to(root / ".dot" / "y.mp4")
    (root / "notes.txt").write_text("not media\n")
    return root


@pytest.mark.parametrize("path", [".dot/y.mp4", "sub/.z.mp4", "link.mp4", "sub/../.dot/y.mp4"])
def test_hidden_names_are_not_served(folder: Path, path: str) -> None:
    with pytest.raises(RtspError) as refused:
        Catalog(folder, test_stream=None).locate(path)
    assert refused.value.status == 404
    assert Catalog(folder, test_stream=None, serve_dotfiles=True).locate(path.replace("sub/../", ""))


def test_listing_follows_the_same_rule(folder: Path) -> None:
    assert ".dot/y.mp4" not in Catalog(folder, test_stream=None).list_paths()
    assert ".dot/y.mp4" in Catalog(folder, test_stream=None, serve_dotfiles=True).list_paths()


async def test_doubled_slashes_share_one_probe(folder: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    probes: list[Path] = []
    real = catalog_module.probe
    monkeypatch.setattr(catalog_module, "probe", lambda file: probes.append(file) or real(file))
    catalog = Catalog(folder, test_stream=None)
    names = {
        (await catalog.resolve(p)).presentation.name
        for p in ("sub/x.mp4", "sub//x.mp4", "sub///x.mp4", "sub/./x.mp4")
    }
    assert len(probes) == 1 and names == {"sub/x.mp4"}


async def test_error_bodies_name_the_request_path_not_the_folder(folder: Path) -> None:
    with pytest.raises(RtspError) as refused:
        await Catalog(folder, test_stream=None).resolve("notes.txt")
    assert refused.value.status == 415 and refused.value.body
    assert str(folder) not in refused.value.body and "notes.txt" in refused.value.body
