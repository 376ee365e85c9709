"""Reading a Deferred that has already fired, in tests without a reactor."""

from twisted.python.failure import Failure


def result(d):
    """The value ``d`` fired with (its failure raised); the Deferred must have fired."""
    out = []
    d.addBoth(out.append)
    assert out, "the Deferred did not fire"
    if isinstance(out[0], Failure):
        out[0].raiseException()
    return out[0]
