"""The so3g housekeeping archive: file format, index and summaries.

Both the g3 file scanner (a component) and the g3-reader (a DataNodeServer)
need all three, and neither may import the other, so they live in the
library. Nothing is imported here: ``sisock.g3.files`` needs only numpy,
while the index needs SQLAlchemy, and the demo writer should not pay for it.
"""
