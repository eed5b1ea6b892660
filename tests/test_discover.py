from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from vmcli.data import MODALITIES, scan
from vmcli.errors import DataError


def png(path: Path, size=(8, 8)):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.zeros(size, np.uint8)).save(path, format="PNG")


def test_splits_and_labels(image_folder):
    index = scan(image_folder, MODALITIES)
    assert index.modality == "image"
    assert index.splits == ["test", "train"]
    assert {it.label for it in index.items} == {"circle", "square"}
    assert sum(it.split == "train" for it in index.items) == 16
    assert all(not it.path.is_absolute() for it in index.items)


def test_flat_folder_is_unlabeled(tmp_path):
    for i in range(3):
        png(tmp_path / f"{i}.png")
    index = scan(tmp_path, MODALITIES)
    assert not index.labeled and index.splits == []
    assert [it.split for it in index.items] == ["", "", ""]


def test_class_folders_without_splits(tmp_path):
    png(tmp_path / "a" / "1.png")
    png(tmp_path / "b" / "2.png")
    index = scan(tmp_path, MODALITIES)
    assert sorted(it.label for it in index.items) == ["a", "b"]
    assert index.splits == []


def test_hidden_files_and_other_files_ignored(tmp_path):
    png(tmp_path / "x.png")
    png(tmp_path / ".hidden.png")
    png(tmp_path / ".cache" / "y.png")
    (tmp_path / "notes.txt").write_text("hello")
    index = scan(tmp_path, MODALITIES)
    assert [str(it.path) for it in index.items] == ["x.png"]
    assert index.unrecognized == 1 and index.ignored_examples == ["notes.txt"]


def test_ignored_files_are_named_the_first_few(tmp_path, capsys):
    from vmcli.session import _describe

    png(tmp_path / "x.png")
    for name in ("a.txt", "b.xlsx", "sub/c.doc", "sub/d.md"):
        (tmp_path / name).parent.mkdir(exist_ok=True)
        (tmp_path / name).write_text("hello")
    index = scan(tmp_path, MODALITIES)
    assert index.unrecognized == 4 and len(index.ignored_examples) == 3
    _describe(index)
    err = " ".join(capsys.readouterr().err.split())
    assert "4 other file(s) ignored: a.txt, b.xlsx, sub/c.doc, and 1 more" in err
    (tmp_path / "x.png").unlink()
    with pytest.raises(DataError, match=r"found no image.*\(4 other file\(s\) ignored: a.txt"):
        scan(tmp_path, MODALITIES)


def test_header_decides_over_extension(tmp_path):
    png(tmp_path / "real.png")
    Image.fromarray(np.zeros((8, 8), np.uint8)).save(tmp_path / "renamed.dat", format="PNG")
    index = scan(tmp_path, MODALITIES)
    assert sorted(str(it.path) for it in index.items) == ["real.png", "renamed.dat"]


def test_missing_empty_and_file_errors(tmp_path):
    with pytest.raises(DataError, match="no such folder"):
        scan(tmp_path / "nope", MODALITIES)
    with pytest.raises(DataError, match="found no image"):
        scan(tmp_path, MODALITIES)
    png(tmp_path / "a.png")
    with pytest.raises(DataError, match="is a file"):
        scan(tmp_path / "a.png", MODALITIES)


def test_files_beside_split_folders_are_reported(tmp_path):
    png(tmp_path / "train" / "a" / "1.png")
    png(tmp_path / "test" / "a" / "2.png")
    png(tmp_path / "stray.png")
    index = scan(tmp_path, MODALITIES)
    assert len(index.items) == 2 and index.outside_splits == 1
    assert any("outside the split folders" in n for n in index.notes)


def test_asking_for_a_modality_the_folder_lacks(tmp_path):
    png(tmp_path / "a.png")
    with pytest.raises(DataError, match=r"no audio files here \(it holds 1 image files\)"):
        scan(tmp_path, MODALITIES, modality="audio")


def test_class_folders_linked_from_elsewhere_are_followed_once(tmp_path):
    """A dataset assembled from links (train/cat → /storage/cat) lost every linked class
    without a word; links back into the folder (a loop, a duplicate) add nothing."""
    storage, root = tmp_path / "storage", tmp_path / "data"
    for i in range(2):
        png(storage / "cat" / f"{i}.png")
        png(root / "train" / "dog" / f"{i}.png")
    (root / "train" / "cat").symlink_to(storage / "cat", target_is_directory=True)
    (root / "train" / "dog" / "loop").symlink_to(root, target_is_directory=True)
    (root / "train" / "also_dog").symlink_to(root / "train" / "dog", target_is_directory=True)
    # outside DATA: a loop, a second link to the linked class, and a link to DATA's parent
    # (it holds DATA itself, and `/` would be the whole disk)
    (storage / "cat" / "again").symlink_to(storage / "cat", target_is_directory=True)
    for name in ("zcat", "kitten"):  # listed in either order, the first by name ("cat") counts
        (root / "train" / name).symlink_to(storage / "cat", target_is_directory=True)
    (root / "train" / "up").symlink_to(tmp_path, target_is_directory=True)
    index = scan(root, MODALITIES)
    assert sorted(str(it.path) for it in index.items) == [
        "train/cat/0.png",
        "train/cat/1.png",
        "train/dog/0.png",
        "train/dog/1.png",
    ]
    assert {it.label for it in index.items} == {"cat", "dog"}


def test_broken_links_are_named_not_silently_left_out(tmp_path, capsys):
    png(tmp_path / "a" / "0.png")
    (tmp_path / "a" / "1.png").symlink_to(tmp_path / "gone.png")
    index = scan(tmp_path, MODALITIES)
    assert [str(it.path) for it in index.items] == ["a/0.png"]
    err = " ".join(capsys.readouterr().err.split())
    assert "1 broken link(s) left out (their targets do not exist): a/1.png" in err


def test_unreadable_folders_are_named_not_silently_left_out(tmp_path, monkeypatch, capsys):
    """(chmod 000 cannot stop root, so the refusal is simulated where the walk lists a folder.)"""
    import os

    for name in ("a", "b"):
        png(tmp_path / "data" / name / "0.png")
    real = os.scandir

    def scandir(path):
        if Path(path) == denied:
            raise PermissionError(13, "Permission denied", str(path))
        return real(path)

    monkeypatch.setattr(os, "scandir", scandir)
    denied = tmp_path / "data" / "b"
    index = scan(tmp_path / "data", MODALITIES)
    assert [str(it.path) for it in index.items] == ["a/0.png"]
    err = " ".join(capsys.readouterr().err.split())
    assert f"1 folder(s) could not be read, their files are left out: {denied}" in err
    denied = tmp_path / "data"
    with pytest.raises(DataError, match="data: cannot be read"):
        scan(tmp_path / "data", MODALITIES)
