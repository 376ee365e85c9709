"""Deterministic example data: the g3 archive, the APEX and UCSC text
archives and the example-weather files.

Tests, benchmarks, the docs and ``sisock up`` all need archives whose every
value is known in advance; one place writes them, in the library, so the
local stack launcher gets them without importing a DataNodeServer. Each
writer knows its format on its own, and the tests check that what it writes
is what the matching server serves.
"""
