"""The labelled development clips beside the repository (never copied into it)."""

from __future__ import annotations

import csv

import pytest

from tests.conftest import SHARED_DATA


def validation_rows(per_label: int) -> list[dict]:
    """The first `per_label` gunshot and other rows of the validation fold; skips without the data."""
    manifest = SHARED_DATA / "manifest.csv"
    if not manifest.exists():
        pytest.skip(f"{manifest} is not here (the labelled data lives beside the repository)")
    with manifest.open() as handle:
        rows = [r for r in csv.DictReader(handle) if r["fold"] == "val"]
    return [r for r in rows if r["label"] == "gunshot"][:per_label] + [r for r in rows if r["label"] == "other"][
        :per_label
    ]
