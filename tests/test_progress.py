"""The one progress bar: drawn over one line on a terminal, a line per update in a log."""

import io

from asdn_tf.io import progress


class Terminal(io.StringIO):
    def isatty(self):
        return True


def test_a_terminal_gets_one_line_redrawn_within_its_width(monkeypatch):
    monkeypatch.setenv("COLUMNS", "40")
    stream = Terminal()
    draw = progress.bar("train", stream, width=8)
    draw(1, 4, "loss 0.1234 lr 1.00e-04 ETA 0:00:03")
    draw(4, 4)
    first, second = stream.getvalue().split("\r")[1:]
    assert first == "train ██······ 1/4 loss 0.1234 lr 1.00e\033[K"  # 39 columns, then clear
    assert second == "train ████████ 4/4 \033[K"
    progress.clear(stream)
    assert stream.getvalue().endswith("\r\033[K")


def test_a_log_gets_a_line_per_update_or_nothing():
    assert progress.bar("evaluate", io.StringIO()) is None
    stream = io.StringIO()
    draw = progress.bar(stream=stream, width=4, log=True)
    draw(1, 2, "loss 0.5")
    draw(2, 2, "loss 0.25")
    assert stream.getvalue() == "██·· 1/2 loss 0.5\n████ 2/2 loss 0.25\n"
    progress.clear(stream)
    assert stream.getvalue().endswith("loss 0.25\n")


def test_training_draws_the_same_bar(monkeypatch):
    from asdn_tf.training import common
    stream = io.StringIO()
    monkeypatch.setattr("sys.stderr", stream)
    common.progress_line(3, 6, 0.125, 1e-4, 2.0)
    assert stream.getvalue() == ("████████████············ 3/6 loss 0.1250 lr 1.00e-04 2.00 "
                                 "steps/s ETA 0:00:01\n")
