"""Progress: a tqdm bar on a terminal, plain periodic lines in a log (scorelab.progress)."""

from __future__ import annotations

import io

import pytest
import tqdm.std

from scorelab import progress as progress_module
from scorelab.progress import Lines, progress
from scorelab.training import TrainConfig, train


class FakeClock:
    """Seconds that pass only when the test says so."""

    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_lines_every_interval_with_rate_and_eta():
    out, clock = io.StringIO(), FakeClock()
    bar = progress(100, "train", unit="step", stream=out, interval=10.0, clock=clock)
    assert isinstance(bar, Lines)
    for _ in range(30):  # 30 steps at 2 steps/s: lines at 10 s (step 20) only
        clock.now += 0.5
        bar.update(1)
        if bar.n == 10:
            bar.set_postfix(loss="0.1234")
    assert out.getvalue().splitlines() == [
        "train: 20/100 steps (20%), loss 0.1234, 2 step/s, elapsed 10s, ETA 40s"
    ]
    bar.close()  # a closing line, because it has written one
    assert out.getvalue().splitlines()[1] == (
        "train: 30/100 steps (30%), loss 0.1234, 2 step/s, elapsed 15s, ETA 35s"
    )


def test_lines_count_rate_from_the_resumed_step_and_stay_quiet_when_short():
    out, clock = io.StringIO(), FakeClock()
    with progress(1000, "train", unit="step", initial=900, stream=out, interval=30.0,
                  clock=clock) as bar:  # fmt: skip
        for _ in range(100):
            clock.now += 1.0
            bar.update(1)
    lines = out.getvalue().splitlines()
    assert lines[0] == "train: 930/1000 steps (93%), 1 step/s, elapsed 30s, ETA 1m10s"
    assert lines[-1] == "train: 1000/1000 steps (100%), 1 step/s, elapsed 1m40s"
    quiet = io.StringIO()
    with progress(10, "heun", stream=quiet, interval=30.0, clock=FakeClock()) as bar:
        bar.update(10)  # done before the first interval: nothing in the log
    assert quiet.getvalue() == ""


def test_a_terminal_gets_a_tqdm_bar_and_show_false_nothing():
    bar = progress(5, "x", stream=Terminal())
    assert isinstance(bar, tqdm.std.tqdm) and not bar.disable
    bar.close()
    off = io.StringIO()
    with progress(5, "x", stream=off, show=False, interval=0.0) as bar:
        bar.update(5)
    assert off.getvalue() == ""


def test_trainer_prints_progress_lines_into_a_log(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(progress_module, "INTERVAL_S", 0.0)  # a line at every step
    train(TrainConfig(data="moons", n=200, steps=3, batch_size=8, out=str(tmp_path / "r")))
    err = capsys.readouterr().err  # pytest's capture is not a terminal
    assert "train: 1/3 steps (33%)" in err and "train: 3/3 steps (100%)" in err
    assert "step/s" in err and "ETA" in err


@pytest.mark.parametrize("seconds, text", [(5, "5s"), (75, "1m15s"), (3725, "1h02m")])
def test_durations(seconds, text):
    assert progress_module._duration(seconds) == text
