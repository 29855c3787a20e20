"""Where state lives: ./.baton, unless BATON_HOME or --home says otherwise."""

from __future__ import annotations

from pathlib import Path

import pytest

from orchestrator.service.home import Home


def test_default_home_is_dot_baton_in_the_working_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("BATON_HOME", raising=False)
    assert Home.resolve().root == tmp_path / ".baton"


def test_baton_home_moves_it_and_home_flag_wins(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("BATON_HOME", str(tmp_path / "env"))
    assert Home.resolve().root == tmp_path / "env"
    assert Home.resolve(str(tmp_path / "flag")).root == tmp_path / "flag"


def test_create_makes_every_directory(tmp_path: Path) -> None:
    home = Home(tmp_path / "h").create()
    assert all(p.is_dir() for p in (home.root, home.artifacts, home.datasets, home.agents))
    assert home.bus == tmp_path / "h" / "bus.db"
