# SPDX-License-Identifier: GPL-2.0-or-later
"""A raw NBD client, for the tests that must send what libnbd refuses to:
any phase of a connection reached by hand (greeting, client flags,
options, requests with any header), garbage at any point, and a check that
the server closes a connection it should close.

Used by test_nbd_robustness.py, test_limits.py and test_hygiene.py.  It
speaks fixed newstyle with simple replies only; names follow the NBD
protocol document (NBD_OPT_GO is OPT_GO, NBD_REP_ACK is REP_ACK...).
Waits are bounded by the socket timeout.
"""

import socket
import struct
import time

from harness import assert_eq

# How long the server may take to close a connection it should close.
CLOSE_TIMEOUT = 10

NBDMAGIC = 0x4e42444d41474943
IHAVEOPT = 0x49484156454f5054
REPLY_MAGIC = 0x3e889045565a9
REQUEST_MAGIC = 0x25609513
SIMPLE_REPLY_MAGIC = 0x67446698
FLAG_FIXED_NEWSTYLE = 1
FLAG_NO_ZEROES = 2
OPT_EXPORT_NAME, OPT_ABORT, OPT_LIST, OPT_INFO, OPT_GO = 1, 2, 3, 6, 7
OPT_STRUCTURED_REPLY = 8
REP_ACK, REP_SERVER, REP_INFO = 1, 2, 3
REP_ERR_UNSUP = (1 << 31) + 1
REP_ERR_UNKNOWN = (1 << 31) + 6
INFO_EXPORT = 0
CMD_READ, CMD_WRITE, CMD_DISC, CMD_FLUSH = 0, 1, 2, 3
CMD_TRIM, CMD_CACHE, CMD_WRITE_ZEROES, CMD_BLOCK_STATUS = 4, 5, 6, 7
NBD_EPERM, NBD_EINVAL, NBD_ENOSPC = 1, 22, 28


class Closed(Exception):
    """The server closed the connection."""


class RawClient:
    """Just enough NBD to reach any phase of a connection by hand."""

    def __init__(self, path, timeout=CLOSE_TIMEOUT):
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(timeout)
        self.sock.connect(path)
        self.handle = 0

    def close(self):
        self.sock.close()

    def send(self, data):
        self.sock.sendall(data)

    def recv_exact(self, n):
        buf = b''
        while len(buf) < n:
            try:
                chunk = self.sock.recv(n - len(buf))
            except ConnectionResetError:
                raise Closed() from None
            if not chunk:
                raise Closed()
            buf += chunk
        return buf

    def wait_closed(self, what, timeout=CLOSE_TIMEOUT):
        """Read (and drop) until the server closes; fail if it does not."""
        self.sock.settimeout(timeout)
        deadline = time.monotonic() + timeout
        try:
            while time.monotonic() < deadline:
                if not self.sock.recv(65536):
                    return
        except ConnectionResetError:
            return
        except socket.timeout:
            pass
        raise AssertionError(f'{what}: the server did not close the '
                             f'connection within {timeout} s')

    # Handshake

    def greeting(self):
        magic, opt_magic, flags = struct.unpack('>QQH', self.recv_exact(18))
        assert_eq((magic, opt_magic), (NBDMAGIC, IHAVEOPT), 'greeting')
        assert flags & FLAG_FIXED_NEWSTYLE, 'fixed newstyle'
        return flags

    def client_flags(self, flags=FLAG_FIXED_NEWSTYLE | FLAG_NO_ZEROES):
        self.send(struct.pack('>I', flags))

    def option(self, opt, data=b''):
        self.send(struct.pack('>QII', IHAVEOPT, opt, len(data)) + data)

    def option_reply(self):
        magic, opt, rtype, length = struct.unpack('>QIII',
                                                  self.recv_exact(20))
        assert_eq(magic, REPLY_MAGIC, 'option reply magic')
        return opt, rtype, self.recv_exact(length)

    def go(self, name=b'disk'):
        """NBD_OPT_GO; the export's (size, flags)."""
        self.option(OPT_GO, struct.pack('>I', len(name)) + name +
                    struct.pack('>H', 0))
        size = None
        while True:
            opt, rtype, data = self.option_reply()
            assert_eq(opt, OPT_GO, 'reply to')
            if rtype == REP_INFO and struct.unpack('>H', data[:2])[0] == \
                    INFO_EXPORT:
                _, size, flags = struct.unpack('>HQH', data[:12])
            elif rtype == REP_ACK:
                assert size is not None, 'GO acknowledged without an export'
                return size, flags
            elif rtype & (1 << 31):
                raise AssertionError(f'GO failed: {rtype:#x} {data!r}')

    def handshake(self):
        self.greeting()
        self.client_flags()
        return self.go()

    # Transmission (simple replies: no structured reply negotiated)

    def request(self, cmd, offset=0, length=0, flags=0, payload=b'',
                magic=REQUEST_MAGIC):
        self.handle += 1
        self.send(struct.pack('>IHHQQI', magic, flags, cmd, self.handle,
                              offset, length) + payload)
        return self.handle

    def reply(self, read_length=0):
        """A simple reply: (error, data)."""
        magic, error, handle = struct.unpack('>IIQ', self.recv_exact(16))
        assert_eq(magic, SIMPLE_REPLY_MAGIC, 'reply magic')
        assert_eq(handle, self.handle, 'reply handle')
        data = self.recv_exact(read_length) if error == 0 else b''
        return error, data
