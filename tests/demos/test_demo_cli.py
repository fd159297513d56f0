"""``scorelab demo``: the list, clear errors, and one demo end to end through the command."""

from __future__ import annotations

import json

import pytest

from scorelab.cli.main import main
from scorelab.demos import DEMOS


def test_list_names_every_demo_with_one_line(capsys):
    assert main(["demo", "--list"]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert [line.split()[0] for line in lines] == list(DEMOS)
    for line, demo in zip(lines, DEMOS.values(), strict=True):
        assert line.endswith(demo.summary)


def test_bad_name_names_the_valid_ones(tmp_path):
    with pytest.raises(SystemExit) as err:
        main(["demo", "langevin", "--out", str(tmp_path)])
    message = str(err.value)
    assert message.startswith("error: unknown demo 'langevin'")
    assert all(name in message for name in DEMOS)
    assert not any(tmp_path.iterdir())  # refused before anything ran


def test_no_name_and_both_are_refused():
    with pytest.raises(SystemExit, match="name a demo"):
        main(["demo"])
    with pytest.raises(SystemExit, match="not both"):
        main(["demo", "smoothing", "--all"])


def test_help_lists_the_demos(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["demo", "--help"])
    assert exit_info.value.code == 0
    assert "usage: scorelab demo" in (out := capsys.readouterr().out)
    assert "concentration" in out.replace("\n", " ")


def test_one_demo_through_the_command(tmp_path, capsys):
    assert main(["demo", "smoothing", "--quick", "--out", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert out.startswith("smoothing (") and "Smoothing a 3-component mixture" in out
    folder = tmp_path / "smoothing"
    assert (folder / "smoothing.png").stat().st_size > 10_000
    record = json.loads((folder / "result.json").read_text())
    assert record["name"] == "smoothing" and record["quick"] is True
    assert record["numbers"]["worst"] < 1e-12
    assert not (tmp_path / "index.html").exists()  # one demo: no gallery


def test_two_demos_write_a_gallery(tmp_path, capsys):
    assert main(["demo", "smoothing", "concentration", "--quick", "--out", str(tmp_path)]) == 0
    page = (tmp_path / "index.html").read_text()
    assert 'id="smoothing"' in page and 'id="concentration"' in page
    assert 'id="tweedie"' not in page
    assert "gallery:" in capsys.readouterr().out
