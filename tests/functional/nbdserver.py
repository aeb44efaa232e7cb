# SPDX-License-Identifier: GPL-2.0-or-later
"""
A captive daemon with an NBD export, and the server under test.

NbdDaemon starts a daemon with some nodes and an NBD server on a UNIX
socket in the test's directory, exports one node as 'disk', waits until
the socket accepts connections, and connects libnbd clients to it; every
script that serves a node over NBD starts its daemon through it.

The test_nbd_*.py scripts run against blockd by default, or against
qemu-storage-daemon with --server=qsd (or BLOCKD_TEST_SERVER=qsd), so the
same tests check QSD's behaviour too: they pass server_binary() as the
daemon's binary.
"""
import os
import shutil
import sys

from harness import (TestEnv, blockd_binary, libnbd, nbd_available,
                     require_program, skip)


def take_server_flag():
    """--server=blockd|qsd from argv (removed there) or BLOCKD_TEST_SERVER."""
    server = os.environ.get('BLOCKD_TEST_SERVER', 'blockd')
    for arg in list(sys.argv[1:]):
        if arg.startswith('--server='):
            server = arg.split('=', 1)[1]
            sys.argv.remove(arg)
    if server not in ('blockd', 'qsd'):
        print(f'unknown server {server!r} (blockd or qsd)')
        sys.exit(2)
    return server


SERVER = take_server_flag()


def check_server():
    """Skip the script unless the server under test can export over NBD."""
    if SERVER == 'qsd':
        require_program('qemu-storage-daemon')
        return
    env = TestEnv('probe')
    try:
        if not nbd_available(env):
            skip('this blockd has no NBD server (no nbd-server-start)')
    finally:
        env.cleanup()


def server_binary():
    return shutil.which('qemu-storage-daemon') if SERVER == 'qsd' else None


def nbd_uri(sock, name='disk'):
    """The URI of export @name on the UNIX socket @sock."""
    return f'nbd+unix:///{name}?socket={sock}'


def raw_over_file(image, file_opts='', raw_opts='', node='disk0'):
    """--blockdev values: file node file0 on @image, raw node @node over
    it; @file_opts and @raw_opts are appended (',key=value...')."""
    return [f'driver=file,node-name=file0,filename={image}{file_opts}',
            f'driver=raw,node-name={node},file=file0{raw_opts}']


def connect(uri, strict=True, structured=True, meta=False):
    """A libnbd handle connected to @uri; without @strict, libnbd lets
    through requests it would refuse itself; @meta asks for
    base:allocation."""
    nbd = libnbd()
    h = nbd.NBD()
    if meta:
        h.add_meta_context(nbd.CONTEXT_BASE_ALLOCATION)
    if not strict:
        h.set_strict_mode(0)
    if not structured:
        h.set_request_structured_replies(False)
    h.connect_uri(uri)
    return h


class NbdDaemon:
    """A captive daemon (blockd, or @binary) with iothread objects
    @iothreads, the nodes @blockdevs (--blockdev values) and an NBD server
    on nbd.sock in the test directory (@nbd_opts appended), exporting
    @node as 'disk' (id exp0): writable if @writable, run in @iothread if
    given (a name; a list of names for a multiqueue export), with
    @export_opts appended; or with the --export values @exports instead.
    @extra options go last.  Ready when the NBD socket accepts
    connections.

    Under qemu-storage-daemon the export stays in the main loop unless
    @qsd_iothread: QSD 7.2 aborts when a client leaves an iothread
    export."""

    def __init__(self, env, blockdevs, node='disk0', *, writable=True,
                 iothread=None, qsd_iothread=False, export_opts='',
                 exports=None, iothreads=(), nbd_opts='', extra=(),
                 binary=None, daemon_env=None):
        self.env = env
        self.sock = env.path('nbd.sock')
        self.uri = nbd_uri(self.sock)
        qsd = binary is not None and binary != blockd_binary()
        if qsd and not qsd_iothread:
            iothread = None
        if exports is None:
            export = f'type=nbd,id=exp0,node-name={node},name=disk'
            if writable:
                export += ',writable=on'
            if isinstance(iothread, str):
                export += f',iothread={iothread}'
            elif iothread:
                export += ''.join(f',iothread.{i}={name}'
                                  for i, name in enumerate(iothread))
            exports = [export + export_opts]
        args = []
        for obj in iothreads:
            args += ['--object', f'iothread,id={obj}']
        for blockdev in blockdevs:
            args += ['--blockdev', blockdev]
        args += ['--nbd-server',
                 f'addr.type=unix,addr.path={self.sock}{nbd_opts}']
        for export in exports:
            args += ['--export', export]
        self.daemon = env.start(args + list(extra), binary=binary,
                                env=daemon_env)
        self.daemon.wait_socket(self.sock)

    def connect(self, **kwargs):
        """A libnbd client of 'disk' (connect()'s options)."""
        return connect(self.uri, **kwargs)

    def check_alive(self, what):
        """The daemon has not exited (@what says when this was asked)."""
        if not self.daemon.running:
            self.daemon.wait(expect_rc=None)
            raise AssertionError(
                f'the daemon died ({what}): exit status '
                f'{self.daemon.proc.returncode}, stderr: '
                f'{self.daemon.stderr.strip()}')

    def stop(self):
        """SIGTERM; the daemon must still be running, and exit 0."""
        self.check_alive('at the end')
        self.daemon.stop()
