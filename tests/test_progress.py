"""Progress on stderr: one line per unit where it is not a terminal, tqdm where it is."""

import io

from seedtree.progress import LineProgress, progress_bar


class Terminal(io.StringIO):
    def isatty(self):
        return True


def test_a_line_per_unit_when_not_a_terminal():
    stream = io.StringIO()
    bar = progress_bar(["a", "b", "c"], desc="run gsm8k ar", unit="problem", stream=stream)
    assert isinstance(bar, LineProgress)
    seen = []
    for item in bar:
        seen.append(item)
        bar.set_postfix(correct=len(seen))
    lines = [line.split(" (")[0] for line in stream.getvalue().splitlines()]
    assert seen == ["a", "b", "c"]
    assert lines == [f"run gsm8k ar: {i}/3 problem" for i in (1, 2, 3)]
    assert stream.getvalue().splitlines()[-1].endswith("correct=3")  # set while it ran


def test_a_bar_on_a_terminal_and_nothing_when_disabled():
    assert not isinstance(progress_bar(total=3, stream=Terminal()), LineProgress)
    quiet = io.StringIO()
    bar = progress_bar(total=3, disable=True, stream=quiet)
    bar.update()
    bar.close()
    assert quiet.getvalue() == ""
