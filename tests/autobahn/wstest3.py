"""Runs Autobahn|Testsuite's fuzzing client (ported by port.py) on Python 3.

    PYTHONPATH=<dir holding the ported autobahntestsuite> python wstest3.py SPEC.json [CONNECT_ADDR]

AUTOBAHN_TIME_SCALE (default 1) multiplies the cases' fallback timers.

SPEC is wstest's fuzzingclient spec (servers, cases, outdir); the JSON reports go to its
outdir. CONNECT_ADDR, if given, is the IP every connection goes to, whatever the URL's
host: a tunnel's URL names a host only its server knows (`ab.localhost`), which must
still be the Host header.

The suite was written for Python 2, where a str literal is bytes: its cases build
payloads from str literals and compare them with the bytes received. The shims below
keep that meaning (a str stands for its Latin-1 bytes) where bytes and str meet.
"""
import binascii
import json
import os
import pickle
import sys

import txaio

txaio.use_twisted()


def _b(x):
    return x.encode("latin-1") if isinstance(x, str) else x


# Python 2's b2a_hex took str and returned str; the suite formats it into text.
_hex = binascii.b2a_hex
binascii.b2a_hex = lambda data, *a: _hex(_b(data), *a).decode("ascii")

from autobahn.websocket import protocol as _protocol  # noqa: E402
from autobahn.websocket import utf8validator as _utf8  # noqa: E402

W = _protocol.WebSocketProtocol


def _bytes_first(name):
    orig = getattr(W, name)

    def shim(self, *a, **kw):
        if a:
            a = (_b(a[0]),) + a[1:]
        for key in ("payload", "data"):
            if key in kw:
                kw[key] = _b(kw[key])
        return orig(self, *a, **kw)

    setattr(W, name, shim)


for _name in ("sendData", "sendMessage", "sendMessageFrame", "sendMessageFrameData"):
    _bytes_first(_name)

_send_frame = W.sendFrame


def _send_frame_shim(self, opcode, payload=b"", fin=True, rsv=0, mask=None, payload_len=None, chopsize=None,
                     sync=False):
    payload = _b(payload)
    if payload_len is not None and len(payload) > 0:
        # Autobahn 0.10.9 repeats the payload up to payload_len with `/`, a float on
        # Python 3: repeat it here.
        payload = payload * (payload_len // len(payload)) + payload[: payload_len % len(payload)]
        payload_len = None
    return _send_frame(self, opcode, payload, fin, rsv, _b(mask), payload_len, chopsize, sync)


W.sendFrame = _send_frame_shim
_send_ping = W.sendPing
W.sendPing = lambda self, payload=None: _send_ping(self, _b(payload))
_send_pong = W.sendPong
W.sendPong = lambda self, payload=None: _send_pong(self, _b(payload))
_send_close_frame = W.sendCloseFrame
W.sendCloseFrame = lambda self, code=None, reasonUtf8=None, isReply=False: _send_close_frame(
    self, code, _b(reasonUtf8), isReply)
_validate = _utf8.Utf8Validator.validate
_utf8.Utf8Validator.validate = lambda self, ba: _validate(self, _b(ba))


def _norm(o):
    if isinstance(o, str):
        return _b(o)
    if isinstance(o, (list, tuple)):
        return type(o)(_norm(x) for x in o)
    return o


from autobahntestsuite.case import case as _case  # noqa: E402

# Expected and received events compare as Python 2 compared them (str == bytes).
_case.Case.compare = lambda self, a, b: pickle.dumps(_norm(a)) == pickle.dumps(_norm(b))

from twisted.internet import reactor  # noqa: E402

from autobahntestsuite import fuzzing  # noqa: E402

# The JSON reports are what is checked; the HTML ones would write bytes to text files.
_create = fuzzing.FuzzingFactory.createReports
fuzzing.FuzzingFactory.createReports = lambda self, produceHtml=True, produceJson=True: _create(self, False, True)

# Received payloads (bytes) go into the JSON reports as Latin-1 text.
_dumps = json.dumps
json.dumps = lambda o, *a, **kw: _dumps(o, *a, default=lambda x: _b(x).decode("latin-1"), **kw)

# The cases' fallback timers (close or drop the connection 0.5-10 s after a case
# starts, if the peer has not finished it) assume a fast peer; AUTOBAHN_TIME_SCALE
# stretches them for a debug build on a loaded machine. A case that finishes does not
# wait for them.
_scale = float(os.environ.get("AUTOBAHN_TIME_SCALE", "1"))
if _scale != 1:
    for _name in ("closeAfter", "killAfter"):
        _orig = getattr(fuzzing.FuzzingProtocol, _name)
        setattr(fuzzing.FuzzingProtocol, _name, lambda self, delay, _orig=_orig: _orig(self, delay * _scale))

if len(sys.argv) > 2:
    _addr = sys.argv[2]
    fuzzing.connectWS = lambda factory, contextFactory=None, timeout=30, bindAddress=None: reactor.connectTCP(
        _addr, factory.port, factory, timeout, bindAddress)

with open(sys.argv[1]) as f:
    spec = json.load(f)
fuzzing.startClient(spec)
reactor.run()
