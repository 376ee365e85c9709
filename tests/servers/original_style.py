"""A DataNodeServer written the way scripts for the original sisock were:
ApplicationRunner, a certificate read from .crossbar/server_cert.pem with
pyOpenSSL, and either the class or an instance handed to run()."""

import sys

import six  # noqa: F401 - old scripts imported it; keep the environment honest
from autobahn.twisted.wamp import ApplicationRunner
from autobahn.wamp.types import ComponentConfig
from OpenSSL import crypto
from twisted.internet._sslverify import OpenSSLCertificateAuthorities
from twisted.internet.ssl import CertificateOptions

import sisock


class old_server(sisock.base.DataNodeServer):
    name = sys.argv[1] if len(sys.argv) > 1 else "old_style"
    description = "A server written against the original API."

    def get_fields(self, start, end):
        field = {"counter": {"description": "a counter", "timeline": "tl", "type": "number", "units": None}}
        return field, {"tl": {"interval": 1.0, "field": ["counter"]}}

    def get_data(self, field, start, end, min_stride=None):
        start = sisock.base.sisock_to_unix_time(start)
        end = sisock.base.sisock_to_unix_time(end)
        t = [float(x) for x in range(int(start) + 1, int(start) + 6)]
        ret = {"data": {}, "timeline": {}}
        for f in field:
            ret["data"][f] = [1.0, 2.0, 3.0, 4.0, 5.0] if f == "counter" else []
        if "counter" in field:
            ret["timeline"]["tl"] = {"t": t, "finalized_until": t[-1]}
        return ret


if __name__ == "__main__":
    cert = crypto.load_certificate(crypto.FILETYPE_PEM, open(".crossbar/server_cert.pem").read())
    opt = CertificateOptions(trustRoot=OpenSSLCertificateAuthorities([cert]))
    runner = ApplicationRunner("wss://%s:%d/ws" % (sisock.base.SISOCK_HOST, sisock.base.SISOCK_PORT),  # noqa: UP031
                               sisock.base.REALM, ssl=opt)
    if len(sys.argv) > 2 and sys.argv[2] == "instance":
        runner.run(old_server(ComponentConfig(sisock.base.REALM, {})))
    else:
        runner.run(old_server)
