"""The scanner and g3-reader on files written by the real OCS aggregator."""

import numpy as np
import so3g

from g3_helpers import archive, scan


def test_reader_equals_hkarchivescanner_on_aggregator_files(ocs_archive, index_env):
    stats = scan(index_env, ocs_archive.data_dir)
    assert stats.read == len(ocs_archive.files) and stats.failed == 0
    reader = archive(index_env, ocs_archive.data_dir)
    names = list(ocs_archive.fake_fields)  # full names, "<provider description>.<field>"
    assert set(names) <= set(reader.index.names(0, 2**62))
    t_all = ocs_archive.times(names[0])
    rng = np.random.default_rng(5)
    scanner = so3g.hk.HKArchiveScanner()
    for path in ocs_archive.files:
        scanner.process_file(path)
    hk = scanner.finalize()
    for _ in range(10):
        a, b = np.sort(rng.uniform(t_all[0] - 1, t_all[-1] + 1, 2))
        got = reader.series(names, a, b)
        data, timelines = hk.get_data(names, a, b)
        for name in names:
            (tl,) = [tl for tl in timelines.values() if name in tl["fields"]]
            if len(tl["t"]) == 0:
                assert name not in got
                continue
            assert np.array_equal(got[name][0], tl["t"]) and np.array_equal(got[name][1], data[name])
