# SPDX-License-Identifier: GPL-2.0-or-later
"""
The NBD server under test, shared by the test_nbd_*.py scripts: blockd by
default, or qemu-storage-daemon with --server=qsd (or
BLOCKD_TEST_SERVER=qsd), so the same tests check QSD's behaviour too.
"""
import os
import shutil
import sys

from harness import TestEnv, nbd_available, require_program, skip


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
