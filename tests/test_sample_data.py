"""The synthetic dataset: deterministic, labelled synthetic, and in class_name/image layout."""
import hashlib

import pytest

from helpers.sample_data import SAMPLE_CLASSES, course_data, is_synthetic, make_sample_paintings


def digest_of(folder):
    return hashlib.sha256(b"".join(p.read_bytes() for p in sorted(folder.rglob("*.png")))).hexdigest()


def test_same_seed_same_pixels(tmp_path):
    first = make_sample_paintings(tmp_path / "a", n_per_class=5, size=32, seed=3)
    second = make_sample_paintings(tmp_path / "b", n_per_class=5, size=32, seed=3)
    other = make_sample_paintings(tmp_path / "c", n_per_class=5, size=32, seed=4)
    assert digest_of(first) == digest_of(second)
    assert digest_of(first) != digest_of(other)


def test_layout_and_synthetic_marker(tmp_path):
    folder = make_sample_paintings(tmp_path, n_per_class=3, size=32)
    assert sorted(p.name for p in folder.iterdir() if p.is_dir()) == list(SAMPLE_CLASSES)
    assert all(len(list((folder / name).glob("*.png"))) == 3 for name in SAMPLE_CLASSES)
    assert is_synthetic(folder)
    assert "not paintings" in (folder / "SYNTHETIC.md").read_text()
    assert not list(folder.rglob("*.partial"))


def test_course_data_prefers_argument_then_environment(tmp_path, monkeypatch, isolated_cache):
    chosen = tmp_path / "chosen"
    chosen.mkdir()
    monkeypatch.setenv("COURSE_DATA", str(tmp_path))
    assert course_data(chosen) == chosen.resolve()
    assert course_data() == tmp_path.resolve()
    monkeypatch.delenv("COURSE_DATA")
    assert is_synthetic(course_data())


def test_invalid_sizes_rejected(tmp_path):
    with pytest.raises(ValueError, match="n_per_class=0"):
        make_sample_paintings(tmp_path, n_per_class=0)
