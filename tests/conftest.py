"""Shared fixtures: paths to the real data beside the repository, and isolated caches."""
from pathlib import Path

import pytest

REPOSITORY = Path(__file__).resolve().parents[1]
SHARED_DATA = REPOSITORY.parent / "shared" / "data"


@pytest.fixture
def shared_data() -> Path:
    "Return ../shared/data, the real paintings and odd images, or skip when this clone has none."
    if not SHARED_DATA.is_dir():
        pytest.skip(f"real test data not found at {SHARED_DATA}")
    return SHARED_DATA


@pytest.fixture
def isolated_cache(tmp_path, monkeypatch) -> Path:
    "Point the course cache and the torch hub cache at empty temporary folders, with the network off."
    monkeypatch.setenv("COURSE_CACHE", str(tmp_path / "course-cache"))
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    monkeypatch.delenv("COURSE_ONLINE", raising=False)
    monkeypatch.delenv("COURSE_DATA", raising=False)
    return tmp_path
