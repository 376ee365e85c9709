"""sisock: live and archived housekeeping data, served to Grafana over WAMP.

``import sisock`` gives the original API (``sisock.base``) and the modern way
to run a DataNodeServer, ``sisock.run(MyServer)``.
"""

from sisock import base
from sisock.connect import run

__version__ = "0.2.0"
__all__ = ["base", "run", "__version__"]
