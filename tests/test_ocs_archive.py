"""The real OCS aggregator, fed by a real fake-data agent through our router,
writes an HK archive that so3g reads back. Later tests compare the g3 reader
with HKArchiveScanner on these files, so this pins down that they exist, span
several files and hold every sample the agent published while recording."""

import numpy as np
import pytest


@pytest.fixture
def archive(ocs_archive):
    return ocs_archive  # recorded once per test run


def test_aggregator_writes_several_files_with_data(archive):
    print(f"\n{len(archive.files)} files; providers {sorted(archive.providers)}; hkagg {archive.hkagg_versions}")
    for f in archive.file_info:
        span = f"{f.t_last - f.t_first:.1f} s" if f.data_samples else "-"
        print(f"  {f.path}: frames {f.frames}, {f.data_samples} samples over {span}, complete={f.complete}")
    assert set(archive.exit_codes.values()) == {0}, archive.exit_codes
    with_data = [f for f in archive.file_info if f.data_samples]
    assert len(archive.files) >= 2, archive.file_info
    assert len(with_data) >= 2, archive.file_info
    assert all(f.complete for f in archive.file_info), archive.file_info
    assert archive.hkagg_versions == {2}
    assert archive.session_descriptions == {"HK data"}
    assert archive.fake_provider in archive.providers
    # Files are consecutive pieces of one stream: no file's samples start
    # before the previous file's end.
    for a, b in zip(with_data, with_data[1:], strict=False):
        assert a.t_last < b.t_first, (a, b)


def test_scanner_finds_fake_fields_with_increasing_times(archive):
    assert set(archive.fake_fields) <= set(archive.fields), sorted(archive.fields)
    (group,) = {archive.fields[f]["timeline"] for f in archive.fake_fields}  # co-sampled: one timeline
    assert set(archive.fake_fields) <= set(archive.timelines[group]["field"])

    t = archive.times(archive.fake_fields[0])
    assert np.all(np.diff(t) > 0)
    # The agent stamps samples exactly 1/rate apart; equal spacing across
    # frame and file boundaries means nothing was lost or duplicated.
    np.testing.assert_allclose(np.diff(t), 1 / archive.sample_rate, atol=1e-4)

    recorded = archive.record_stop - archive.record_start
    expected = recorded * archive.sample_rate
    assert 0.5 * expected <= len(t) <= (recorded + 5) * archive.sample_rate, (len(t), recorded)
    assert archive.record_start - 5 <= t[0] and t[-1] <= archive.record_stop + 5
    for f in archive.fake_fields:
        values = archive.data[f]
        assert len(values) == len(t)
        assert np.all(np.isfinite(values)) and np.all(np.abs(values - 0.1) < 0.5)
