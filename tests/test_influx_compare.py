"""The differential test's comparison: it must see every kind of difference it claims to."""

from influx_compare import diff, error_shaped, same_point


def answer(values, columns=("time", "mean"), tags=None, name="m"):
    series = {"name": name, "columns": list(columns), "values": values}
    if tags is not None:
        series["tags"] = tags
    return {"results": [{"statement_id": 0, "series": [series]}]}


def test_equal_answers_and_the_tolerances():
    a = answer([[1000, 1.0], [2000, None], [3000, 5]])
    assert diff(a, answer([[1000, 1.0 + 1e-12], [2000, None], [3000, 5.0]])) is None
    assert diff(a, answer([[1001, 1.0], [2000, None], [3000, 5]]), now_slack=1) is None


def test_each_kind_of_difference_is_seen():
    a = answer([[1000, 1.0], [2000, True], [3000, "idle"]])
    cases = {
        "time": answer([[1001, 1.0], [2000, True], [3000, "idle"]]),
        "value": answer([[1000, 1.0 + 1e-6], [2000, True], [3000, "idle"]]),
        "bool": answer([[1000, 1.0], [2000, 1.0], [3000, "idle"]]),
        "null": answer([[1000, None], [2000, True], [3000, "idle"]]),
        "string": answer([[1000, 1.0], [2000, True], [3000, "hold"]]),
        "rows": answer([[1000, 1.0], [2000, True]]),
        "tags": answer([[1000, 1.0], [2000, True], [3000, "idle"]], tags={"feed": "x"}),
        "name": answer([[1000, 1.0], [2000, True], [3000, "idle"]], name="n"),
        "columns": answer([[1000, 1.0], [2000, True], [3000, "idle"]], columns=("time", "max")),
        "error": {"results": [{"statement_id": 0, "error": "no"}]},
        "empty": {"results": [{"statement_id": 0}]},
        "results": {"results": []},
        "top": {"error": "bad"},
    }
    for what, other in cases.items():
        assert diff(a, other) is not None, what
        assert diff(other, a) is not None, what


def test_points_and_error_shapes():
    assert same_point({"time": "t", "mean": 1.0}, {"time": "t", "mean": 1.0 + 1e-13})
    assert not same_point({"time": "t", "mean": 1.0}, {"time": "u", "mean": 1.0})
    assert error_shaped(400, {"error": "error parsing query: x"}) is None
    assert error_shaped(200, {"results": [{"statement_id": 0, "error": "x"}]}) is None
    assert error_shaped(400, {"error": "line one\nline two"}) is not None
    assert error_shaped(500, {"error": "x"}) is not None
    assert error_shaped(400, {"message": "x"}) is not None
    assert error_shaped(200, {"results": [{"error": "x"}]}) is not None
