#!/usr/bin/python3
# SPDX-License-Identifier: GPL-2.0-or-later
"""docs/cli.md and docs/config.md match the binary: every option that
`blockd --help` lists has a section in docs/cli.md and every documented
option is one the binary accepts; every config key the daemon accepts is
in docs/config.md's key table and every documented key is accepted."""

import json
import os
import re
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from harness import assert_eq, main, source_root, test  # noqa: E402

CLI_DOC = os.path.join(source_root(), 'docs', 'cli.md')
CONFIG_DOC = os.path.join(source_root(), 'docs', 'config.md')

LONG_OPT_RE = re.compile(r'(?<![\w-])(--[a-z][a-z-]*)')


def help_options(env):
    result = env.run(['--help'])
    assert_eq(result.returncode, 0, 'blockd --help exit status')
    return set(LONG_OPT_RE.findall(result.stdout))


def documented_options():
    """Options that have a ### section in docs/cli.md."""
    found = set()
    with open(CLI_DOC) as f:
        for line in f:
            if line.startswith('### '):
                found.update(LONG_OPT_RE.findall(line))
    return found


@test
def test_every_help_option_documented(env):
    missing = help_options(env) - documented_options()
    assert_eq(sorted(missing), [], 'options in --help without a section in '
              'docs/cli.md')


@test
def test_every_documented_option_exists(env):
    extra = documented_options() - help_options(env)
    assert_eq(sorted(extra), [], 'options documented in docs/cli.md that '
              '--help does not list')


def documented_config_keys():
    """The first column of docs/config.md's key table."""
    keys = []
    in_keys = False
    with open(CONFIG_DOC) as f:
        for line in f:
            if line.startswith('## '):
                in_keys = line.strip() == '## Keys'
                continue
            m = re.match(r'^\|\s*`([a-z-]+)`\s*\|', line)
            if in_keys and m:
                keys.append(m.group(1))
    return keys


def config_accepts(env, key):
    """Whether the daemon accepts @key in a config file: an unknown key is
    refused naming it; a known one fails (if at all) for its value."""
    path = env.path(f'{key}.json')
    with open(path, 'w') as f:
        json.dump({key: 42}, f)
    result = env.run(['--config', path])
    return f"'{key}'" not in result.stderr or \
        'unexpected' not in result.stderr


@test
def test_config_keys_documented_and_accepted(env):
    keys = documented_config_keys()
    assert_eq(sorted(keys), sorted(['object', 'blockdev', 'nbd-server',
                                    'export', 'chardev', 'monitor',
                                    'pidfile']), 'documented config keys')
    for key in keys:
        assert config_accepts(env, key), f'config key {key} refused'
    assert not config_accepts(env, 'bogus-key'), \
        'an undocumented config key was accepted'


if __name__ == '__main__':
    main()
