"""`crescent demo` runs the link across a real pseudo-terminal and shows loss recovery and rejection."""

from crescent.demo.link_demo import run_demo


def test_demo_over_a_real_pty_recovers_a_lost_answer_and_rejects_a_corrupt_frame() -> None:
    lines: list[str] = []
    counters = run_demo(lines.append)
    assert counters["executed_moves"] == 2  # the retransmitted MOVE_ARC was not executed twice
    assert counters["attempts_of_lost"] == 2
    assert counters["duplicates"] == 1
    assert counters["frame_errors"] >= 1
    assert any("/dev/pts/" in line for line in lines)
