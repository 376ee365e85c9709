"""The one retry policy of the scanner and the reader (sisock.backoff)."""

from sisock.backoff import Backoff


def test_delays_double_up_to_the_cap():
    b = Backoff(0.5, 10.0)
    assert [b.step("down")[0] for _ in range(8)] == [0.5, 1, 2, 4, 8, 10, 10, 10]
    assert b.attempts == 8 and b.failing


def test_reported_when_the_reason_changes():
    b = Backoff(1, 30)
    said = [b.step(reason)[1] for reason in ["refused", "refused", "refused", "timed out", "timed out", "refused"]]
    assert said == [True, False, False, True, False, True]


def test_with_doublings_also_attempts_one_two_four_eight():
    b = Backoff(1, 30, report_doublings=True)
    said = [n + 1 for n in range(20) if b.step("refused")[1]]
    assert said == [1, 2, 4, 8, 16]


def test_waited_counts_what_was_waited():
    b = Backoff(1, 30)
    assert not b.failing and b.waited == 0
    b.waiting(0.25)
    b.waiting(1.5)
    assert b.waited == 1.75
