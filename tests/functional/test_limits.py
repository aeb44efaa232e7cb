#!/usr/bin/python3
# SPDX-License-Identifier: GPL-2.0-or-later
"""Every limit a peer can run into, at the limit and just past it: the
request at the limit is served, the one past it gets a clear error, and
the connection (or, where the limit says so, only that connection) and
the daemon go on.  Also the exposure of the sockets: the QMP socket's
mode, and an NBD TCP listener bound to nothing but the given address.

Limits with their own tests elsewhere are not repeated here (see
docs/reliability.md, section 3): the handshake timeout
(test_nbd_robustness.py::test_idle_handshakes_dropped), connect/disconnect
cycles (test_hygiene.py, 10,000 of them with fd and RSS checks).

Raw sockets (RawClient from nbdraw.py) send what libnbd refuses to
send.  Waits are bounded polls on events (EOF, an fd closing).
"""

import json
import os
import socket
import struct
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from harness import (assert_eq, assert_qmp_error, libnbd,  # noqa: E402
                     main, nbd_available, skip, source_root, test)
from nbdraw import (CMD_BLOCK_STATUS, CMD_CACHE, CMD_FLUSH,  # noqa: E402
                    CMD_READ, CMD_TRIM, CMD_WRITE, CMD_WRITE_ZEROES,
                    NBD_EINVAL, NBD_ENOSPC, OPT_EXPORT_NAME,
                    OPT_GO, OPT_INFO, REP_ACK, REP_ERR_UNKNOWN, REP_INFO,
                    Closed, RawClient)
from nbdserver import NbdDaemon  # noqa: E402

nbd = libnbd()

MiB = 1024 * 1024
IMAGE_SIZE = 64 * MiB
NBD_MAX_BUFFER = 32 * MiB
NBD_MAX_STRING = 4096
QMP_MAX_MESSAGE_BYTES = 1 * MiB
QMP_MAX_OUTPUT_BYTES = 4 * MiB
CONFIG_MAX_BYTES = 16 * MiB
# How long the daemon may take to act on something (close, free an fd).
BOUND = 10


def start(env, server_opts='', exports=None):
    """blockd with a 64 MiB image as node disk0, an NBD server on a UNIX
    socket and @exports (default: 'disk', writable)."""
    if not nbd_available(env):
        skip('this blockd has no NBD server')
    image = env.make_image(size=IMAGE_SIZE)
    srv = NbdDaemon(env, [f'driver=file,node-name=disk0,filename={image}'],
                    iothread='io0', exports=exports, iothreads=('io0',),
                    nbd_opts=server_opts)
    return srv.daemon, srv.sock


def open_fds(pid):
    return len(os.listdir(f'/proc/{pid}/fd'))


def wait_fds(pid, want, what):
    """Poll (bounded) until the daemon holds @want fds."""
    deadline = time.monotonic() + BOUND
    while open_fds(pid) != want:
        if time.monotonic() > deadline:
            raise AssertionError(f'{what}: the daemon holds {open_fds(pid)} '
                                 f'fds, expected {want}')
        time.sleep(0.01)


def serves(sock, what, name='disk'):
    """Export @name is served (written and read back if writable)."""
    h = nbd.NBD()
    h.set_export_name(name)
    h.connect_unix(sock)
    if h.is_read_only():
        assert_eq(len(h.pread(4096, 8 * MiB)), 4096, what)
    else:
        data = os.urandom(4096)
        h.pwrite(data, 8 * MiB)
        assert_eq(h.pread(4096, 8 * MiB), data, what)
    h.shutdown()


def refused_at_once(sock, what):
    """The server accepts and closes without a greeting."""
    c = RawClient(sock, timeout=BOUND)
    try:
        assert_eq(c.sock.recv(1), b'', f'{what}: closed at once')
    except ConnectionResetError:
        pass
    c.close()


# --- NBD: connections -------------------------------------------------------


@test
def test_max_connections_counts_handshakes(env):
    """max-connections=4 with two clients in transmission and two in the
    handshake: twenty more are refused at once, one by one, while the four
    are served; when a handshake goes away there is room again."""
    d, sock = start(env, ',max-connections=4')
    h = []
    for _ in range(2):
        c = nbd.NBD()
        c.connect_uri(f'nbd+unix:///disk?socket={sock}')
        h.append(c)
    raw = [RawClient(sock) for _ in range(2)]
    for c in raw:
        c.greeting()            # in the handshake, holding a slot
    for i in range(20):
        refused_at_once(sock, f'client {i + 5}')
        data = bytes([i + 1]) * 4096
        h[i % 2].pwrite(data, i * 4096)
        assert_eq(h[(i + 1) % 2].pread(4096, i * 4096), data,
                  f'the connected clients, after refusal {i}')
    # The handshaking clients are still served too.
    raw[0].client_flags()
    size, _ = raw[0].go()
    assert_eq(size, IMAGE_SIZE, 'a held handshake finishes')
    raw[0].request(CMD_READ, 0, 4096)
    assert_eq(raw[0].reply(4096), (0, bytes([1]) * 4096), 'its read')
    # One leaves: room for exactly one more.
    raw[1].close()
    deadline = time.monotonic() + BOUND
    while True:
        c = RawClient(sock)
        try:
            c.greeting()
            break
        except Closed:
            c.close()       # the server has not seen the close yet
            assert time.monotonic() < deadline, 'no room after a client left'
            time.sleep(0.01)
    refused_at_once(sock, 'past the limit again')
    c.close()
    raw[0].close()
    for c in h:
        c.shutdown()
    d.stop()


# --- NBD: request boundaries ------------------------------------------------


def boundary_cases(size):
    """(what, cmd, offset, length, payload length, expected error)."""
    top = 1 << 64
    return [
        ('read ending at the end', CMD_READ, size - 4096, 4096, 0, 0),
        ('read ending one past the end', CMD_READ, size - 4095, 4096, 0,
         NBD_EINVAL),
        ('read of one byte at the end', CMD_READ, size - 1, 1, 0, 0),
        ('read of one byte past the end', CMD_READ, size, 1, 0, NBD_EINVAL),
        ('read of length 0 at the end', CMD_READ, size, 0, 0, 0),
        ('read of length 0 past the end', CMD_READ, size + 1, 0, 0,
         NBD_EINVAL),
        ('read of 32 MiB', CMD_READ, 0, NBD_MAX_BUFFER, 0, 0),
        ('read of 32 MiB + 1', CMD_READ, 0, NBD_MAX_BUFFER + 1, 0,
         NBD_EINVAL),
        ('read at 2^63', CMD_READ, 1 << 63, 4096, 0, NBD_EINVAL),
        ('read at 2^63 - 1', CMD_READ, (1 << 63) - 1, 1, 0, NBD_EINVAL),
        ('read at 2^64 - 1 (offset + len wraps)', CMD_READ, top - 1, 4096, 0,
         NBD_EINVAL),
        ('read at 2^64 - 4096 (offset + len == 2^64)', CMD_READ, top - 4096,
         4096, 0, NBD_EINVAL),
        ('write ending at the end', CMD_WRITE, size - 4096, 4096, 4096, 0),
        ('write ending one past the end', CMD_WRITE, size - 4095, 4096, 4096,
         NBD_ENOSPC),
        ('write of length 0', CMD_WRITE, 0, 0, 0, 0),
        ('write of 32 MiB', CMD_WRITE, 0, NBD_MAX_BUFFER, NBD_MAX_BUFFER, 0),
        ('write of 32 MiB + 1 (payload dropped)', CMD_WRITE, 0,
         NBD_MAX_BUFFER + 1, NBD_MAX_BUFFER + 1, NBD_EINVAL),
        ('write at 2^64 - 1 (wraps)', CMD_WRITE, top - 1, 4096, 4096,
         NBD_ENOSPC),
        ('write at 2^63', CMD_WRITE, 1 << 63, 4096, 4096, NBD_ENOSPC),
        ('zeroes ending at the end', CMD_WRITE_ZEROES, size - MiB, MiB, 0, 0),
        ('zeroes one past the end', CMD_WRITE_ZEROES, size - MiB, MiB + 1, 0,
         NBD_ENOSPC),
        ('zeroes of 4 GiB - 1 at 2^64 - 1', CMD_WRITE_ZEROES, top - 1,
         0xffffffff, 0, NBD_ENOSPC),
        ('zeroes of 4 GiB - 1 (past the end)', CMD_WRITE_ZEROES, 0,
         0xffffffff, 0, NBD_ENOSPC),
        ('trim of the whole export', CMD_TRIM, 0, size, 0, 0),
        ('trim one past the end', CMD_TRIM, 1, size, 0, NBD_EINVAL),
        ('trim at 2^64 - 1', CMD_TRIM, top - 1, 2, 0, NBD_EINVAL),
        ('cache ending at the end', CMD_CACHE, size - 4096, 4096, 0, 0),
        ('cache at 2^64 - 4096', CMD_CACHE, top - 4096, 8192, 0, NBD_EINVAL),
        ('block status without a context', CMD_BLOCK_STATUS, 0, 4096, 0,
         NBD_EINVAL),
        ('flush with offset and length set (reserved)', CMD_FLUSH, top - 1,
         0xffffffff, 0, 0),
    ]


@test
def test_request_boundaries(env):
    """Requests at, one past and far past every boundary, on one
    connection (simple replies): each gets its answer, the stream stays in
    step, and nothing past the end reached the file."""
    d, sock = start(env)
    c = RawClient(sock, timeout=60)
    size, _ = c.handshake()
    assert_eq(size, IMAGE_SIZE, 'size')
    for what, cmd, offset, length, payload, want in \
            boundary_cases(size) * 2:
        c.request(cmd, offset, length, payload=b'\xc3' * payload)
        error, _ = c.reply(length if cmd == CMD_READ else 0)
        assert_eq(error, want, what)
        # In step: a small read right after gets its own reply.
        c.request(CMD_READ, 4096, 512)
        error, data = c.reply(512)
        assert_eq(error, 0, f'read after {what}')
    c.request(CMD_READ, size - 4096, 4096)
    # The trim of the whole export ran after the write at the end.
    assert_eq(c.reply(4096)[0], 0, 'the last block')
    c.close()
    assert_eq(os.path.getsize(env.path('disk.raw')), IMAGE_SIZE,
              'the file did not grow')
    serves(sock, 'after the boundary requests')
    d.stop()


# --- NBD: strings -----------------------------------------------------------


@test
def test_export_names_at_the_limit(env):
    at = 'n' * NBD_MAX_STRING
    past = 'p' * (NBD_MAX_STRING + 1)
    desc = 'd' * NBD_MAX_STRING
    d, sock = start(env, exports=[
        'type=nbd,id=exp0,node-name=disk0,name=disk,writable=on',
        f'type=nbd,id=exp1,node-name=disk0,name={at},description={desc}'])
    qmp = env.qmp()
    e = assert_qmp_error(lambda: qmp.cmd(
        'block-export-add', type='nbd', id='exp2', node_name='disk0',
        name=past))
    assert_eq(e.desc, f"export name '{past}' too long", 'name past the limit')
    e = assert_qmp_error(lambda: qmp.cmd(
        'block-export-add', type='nbd', id='exp2', node_name='disk0',
        name='x', description='d' * (NBD_MAX_STRING + 1)))
    assert_eq(e.desc, f"description '{'d' * (NBD_MAX_STRING + 1)}' too long",
              'description past the limit')
    assert_eq(sorted(x['id'] for x in qmp.cmd('query-block-exports')),
              ['exp0', 'exp1'], 'exports')
    # libnbd takes names up to the limit: the long one is served.
    h = nbd.NBD()
    h.set_export_name(at)
    h.set_full_info(True)
    h.connect_unix(sock)
    assert_eq(h.get_canonical_export_name(), at, 'canonical name')
    assert_eq(h.get_export_description(), desc, 'description')
    assert_eq(h.pread(512, 0), bytes(512), 'read')
    h.shutdown()
    # Raw: INFO and GO of a name past the limit get an error reply and the
    # handshake goes on; a name at the limit that does not exist is
    # unknown.
    c = RawClient(sock)
    c.greeting()
    c.client_flags()
    for opt in (OPT_INFO, OPT_GO):
        for name, what in ((past.encode(), 'past the limit'),
                           (b'u' * NBD_MAX_STRING, 'unknown, at the limit')):
            c.option(opt, struct.pack('>I', len(name)) + name +
                     struct.pack('>H', 0))
            got, rtype, _ = c.option_reply()
            assert_eq(got, opt, f'reply to option {opt}, name {what}')
            assert rtype & (1 << 31), f'option {opt}, name {what}: {rtype:#x}'
            if what.startswith('unknown'):
                assert_eq(rtype, REP_ERR_UNKNOWN, f'option {opt}, {what}')
    # GO with the name at the limit, on the same connection.
    c.option(OPT_GO, struct.pack('>I', len(at)) + at.encode() +
             struct.pack('>H', 0))
    while True:
        _, rtype, data = c.option_reply()
        if rtype == REP_ACK:
            break
        assert_eq(rtype, REP_INFO, 'GO reply')
    c.request(CMD_READ, 0, 512)
    assert_eq(c.reply(512), (0, bytes(512)), 'read after GO')
    c.close()
    # EXPORT_NAME cannot fail: past the limit, the connection closes.
    c = RawClient(sock)
    c.greeting()
    c.client_flags()
    c.option(OPT_EXPORT_NAME, past.encode())
    c.wait_closed('EXPORT_NAME past the limit')
    c.close()
    serves(sock, 'after long names')
    serves(sock, 'the long name', name=at)
    d.stop()


# --- QMP ------------------------------------------------------------------


def qmp_raw(path):
    """A negotiated QMP connection as a plain socket."""
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.settimeout(BOUND)
    s.connect(path)
    f = s.makefile('rb')
    json.loads(f.readline())                    # greeting
    s.sendall(b'{"execute": "qmp_capabilities"}\n')
    assert_eq(json.loads(f.readline()), {'return': {}}, 'capabilities')
    return s, f


def read_until_eof(s, what):
    """Everything the server still sends, until it closes (bounded)."""
    got = b''
    deadline = time.monotonic() + BOUND
    try:
        while time.monotonic() < deadline:
            chunk = s.recv(1 << 20)
            if not chunk:
                return got
            got += chunk
    except ConnectionResetError:
        return got
    except socket.timeout:
        pass
    raise AssertionError(f'{what}: the connection was not closed')


def message_of(size, execute='query-version'):
    """A QMP message of exactly @size bytes (a string argument pads it)."""
    head = f'{{"execute": "{execute}", "arguments": {{"pad": "'.encode()
    tail = b'"}}'
    return head + b'x' * (size - len(head) - len(tail)) + tail


@test
def test_qmp_message_size_limit(env):
    d = env.start([])
    other = env.qmp()
    s, f = qmp_raw(env.path('qmp.sock'))
    # At the limit: parsed, refused for its argument, connection goes on.
    msg = message_of(QMP_MAX_MESSAGE_BYTES)
    assert_eq(len(msg), QMP_MAX_MESSAGE_BYTES, 'message size')
    s.sendall(msg + b'\n')
    reply = json.loads(f.readline())
    assert_eq(reply['error']['class'], 'GenericError', 'at the limit')
    assert 'pad' in reply['error']['desc'], reply
    s.sendall(b'{"execute": "query-version"}\n')
    assert 'return' in json.loads(f.readline()), 'after the message'
    # One byte more: an error saying why, then the connection closes.
    s.sendall(message_of(QMP_MAX_MESSAGE_BYTES + 1) + b'\n')
    rest = read_until_eof(s, 'message past the limit')
    lines = [json.loads(x) for x in rest.split(b'\r\n') if x]
    assert_eq(len(lines), 1, 'one reply before the close')
    assert_eq(lines[0]['error']['desc'],
              f'Message too large: over {QMP_MAX_MESSAGE_BYTES} bytes; '
              'closing the connection', 'why')
    s.close()
    # A megabyte of garbage with no message boundary closes it too.
    s, f = qmp_raw(env.path('qmp.sock'))
    try:
        s.sendall(b'{"execute": "' + b'y' * (2 * QMP_MAX_MESSAGE_BYTES))
    except (BrokenPipeError, ConnectionResetError):
        pass        # closed while we were still sending: fine
    read_until_eof(s, 'an endless string')
    s.close()
    other.cmd('query-version')
    d.stop()


@test
def test_qmp_output_queue_limit(env):
    """A client that sends commands and never reads their replies is
    dropped once more than 4 MiB of replies wait for it; another client is
    served throughout."""
    d = env.start([])
    other = env.qmp()
    one = len(json.dumps({'return': other.cmd('query-commands')})) + 2
    baseline = open_fds(d.pid)
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    s.connect(env.path('qmp.sock'))
    wait_fds(d.pid, baseline + 1, 'the stalled client connected')
    # Twice what the queue and the socket buffers can hold.
    n = 2 * (QMP_MAX_OUTPUT_BYTES + 4 * MiB) // one
    s.sendall(b'{"execute": "qmp_capabilities"}\n')
    batch = b'{"execute": "query-commands"}\n' * 1000
    sent = 0
    try:
        while sent < n:
            s.sendall(batch)
            sent += 1000
            assert 'qemu' in other.cmd('query-version'), 'the other client'
    except (BrokenPipeError, ConnectionResetError):
        pass                # dropped while we were sending
    wait_fds(d.pid, baseline, 'the stalled client was not dropped')
    got = len(read_until_eof(s, 'the stalled client'))
    assert got < sent * one, f'all {sent} replies arrived ({got} bytes)'
    s.close()
    assert 'qemu' in other.cmd('query-version'), 'the other client'
    assert 'not reading its output' in d.read_stderr(), d.read_stderr()
    d.stop()


@test
def test_qmp_long_strings(env):
    """Strings far past 4096 bytes in QMP arguments get a clear error or
    are taken as they are; nothing is truncated silently, the daemon goes
    on."""
    d = env.start([])
    qmp = env.qmp()
    long = 'L' * 100000
    assert_qmp_error(lambda: qmp.cmd('blockdev-add', driver='null-co',
                                     node_name=long), 'Node name too long')
    e = assert_qmp_error(lambda: qmp.cmd('blockdev-add', driver='file',
                                         node_name='f0', filename=long))
    assert e.desc.startswith(f"Could not open '{long}'"), e.desc[:100]
    qmp.cmd('object-add', qom_type='iothread', id=long)
    assert_eq([t['id'] for t in qmp.cmd('query-iothreads')], [long],
              'a long id is kept whole')
    qmp.cmd('object-del', id=long)
    assert_qmp_error(lambda: qmp.cmd('object-del', id=long + 'x'))
    assert_qmp_error(lambda: qmp.cmd(long), f"The command {long} has not "
                     'been found', error_class='CommandNotFound')
    d.stop()


@test
def test_config_file_size_limit(env):
    """A config file of 16 MiB is read; one byte more is refused."""
    pad = json.dumps({'pidfile': env.path('blockd.pid')})
    at = env.path('at.json')
    with open(at, 'w') as f:
        f.write(pad + ' ' * (CONFIG_MAX_BYTES - len(pad)))
    assert_eq(os.path.getsize(at), CONFIG_MAX_BYTES, 'size')
    d = env.daemon(['--config', at] + env.monitor_args())
    d.wait_pidfile(env.path('blockd.pid'))
    d.stop()
    past = env.path('past.json')
    with open(past, 'w') as f:
        f.write(pad + ' ' * (CONFIG_MAX_BYTES + 1 - len(pad)))
    r = env.run(['--config', past])
    assert_eq((r.returncode, r.stdout), (1, ''), 'refused')
    assert_eq(r.stderr, f'blockd: --config {past}: the file is larger than '
              f'{CONFIG_MAX_BYTES} bytes\n', 'message')


# --- Socket exposure --------------------------------------------------------


@test
def test_qmp_socket_mode_0600(env):
    """With umask 0 (nothing taken away), the QMP socket is still 0600:
    the daemon sets it, not the umask."""
    old = os.umask(0)
    try:
        d = env.start([])
    finally:
        os.umask(old)
    mode = os.stat(env.path('qmp.sock')).st_mode & 0o7777
    assert_eq(oct(mode), oct(0o600), 'QMP socket mode')
    d.stop()


def listening_inet(pid):
    """The TCP sockets @pid listens on: [(family, address, port)]."""
    inodes = set()
    for fd in os.listdir(f'/proc/{pid}/fd'):
        try:
            target = os.readlink(f'/proc/{pid}/fd/{fd}')
        except FileNotFoundError:
            continue
        if target.startswith('socket:['):
            inodes.add(target[8:-1])
    found = []
    for family, path in (('ipv4', '/proc/net/tcp'),
                         ('ipv6', '/proc/net/tcp6')):
        try:
            with open(path) as f:
                rows = f.readlines()[1:]
        except FileNotFoundError:
            continue
        for row in rows:
            fields = row.split()
            local, state, inode = fields[1], fields[3], fields[9]
            if state != '0A' or inode not in inodes:      # 0A: LISTEN
                continue
            addr, port = local.split(':')
            if family == 'ipv4':
                addr = socket.inet_ntop(socket.AF_INET,
                                        bytes.fromhex(addr)[::-1])
            else:
                raw = bytes.fromhex(addr)
                addr = socket.inet_ntop(socket.AF_INET6, b''.join(
                    raw[i:i + 4][::-1] for i in range(0, 16, 4)))
            found.append((family, addr, int(port, 16)))
    return found


def free_port():
    with socket.socket() as s:
        s.bind(('127.0.0.1', 0))
        return s.getsockname()[1]


@test
def test_nbd_tcp_listens_only_where_told(env):
    if not nbd_available(env):
        skip('this blockd has no NBD server')
    image = env.make_image(size=MiB)
    port = free_port()
    d = env.start(['--blockdev', f'driver=file,node-name=disk0,'
                   f'filename={image}',
                   '--nbd-server', f'addr.type=inet,addr.host=127.0.0.1,'
                   f'addr.port={port}',
                   '--export', 'type=nbd,id=exp0,node-name=disk0,name=disk'])
    assert_eq(listening_inet(d.pid), [('ipv4', '127.0.0.1', port)],
              'TCP listeners')
    h = nbd.NBD()
    h.connect_uri(f'nbd://127.0.0.1:{port}/disk')
    assert_eq(h.get_size(), MiB, 'served on 127.0.0.1')
    h.shutdown()
    # Another loopback address of the same machine: nobody listens there.
    with socket.socket() as s:
        s.settimeout(BOUND)
        try:
            s.connect(('127.0.0.2', port))
            raise AssertionError(f'127.0.0.2:{port} accepted a connection')
        except ConnectionRefusedError:
            pass
    d.stop()


@test
def test_demo_exports_on_unix_sockets_only(env):
    """The demo (scripts/demo with docs/examples/demo.json) exposes nothing
    on the network: its NBD server and monitor are UNIX sockets."""
    with open(os.path.join(source_root(), 'docs', 'examples',
                           'demo.json')) as f:
        cfg = json.load(f)
    assert_eq(cfg['nbd-server']['addr']['type'], 'unix', 'NBD address')
    for mon in cfg['monitor']:
        assert 'path' in mon and 'host' not in mon, mon
    with open(os.path.join(source_root(), 'scripts', 'demo')) as f:
        script = f.read()
    for word in ('inet', 'addr.host', 'tcp'):
        assert word not in script, f'scripts/demo mentions {word!r}'


if __name__ == '__main__':
    main()
