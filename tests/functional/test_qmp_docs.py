#!/usr/bin/python3
# SPDX-License-Identifier: GPL-2.0-or-later
"""docs/qmp.md matches the daemon: every command query-commands lists is
documented, every documented command exists, hidden commands are
documented as internal, and each command's argument tables list exactly
the keys (and required flags and types) of its schema, as the hidden
x-query-command-args reports them.  For blockdev-add, the common options
and each driver's options are checked table by table."""

import os
import re
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from harness import assert_eq, main, source_root, test  # noqa: E402

DOC = os.path.join(source_root(), 'docs', 'qmp.md')

COMMAND_RE = re.compile(r'^### `([^`]+)`\s*$')
DRIVER_RE = re.compile(r'^#### Driver `([^`]+)`\s*$')
ROW_RE = re.compile(r'^\|\s*`([^`]+)`\s*\|([^|]*)\|([^|]*)\|')


class Command:
    def __init__(self, name, internal):
        self.name = name
        self.internal = internal
        self.rows = {}          # path -> (type cell, required cell)
        self.variants = {}      # driver -> {path: (type, required)}
        self.says_none = False


def parse_doc():
    """docs/qmp.md as {name: Command}."""
    commands = {}
    cmd = None
    table = None
    internal = False
    with open(DOC) as f:
        for lineno, line in enumerate(f, 1):
            line = line.rstrip('\n')
            if line.startswith('## '):
                cmd = table = None
                internal = line.strip() == '## Internal'
                continue
            m = COMMAND_RE.match(line)
            if m:
                name = m.group(1)
                assert name not in commands, \
                    f'{DOC}:{lineno}: {name} documented twice'
                cmd = commands[name] = Command(name, internal)
                table = cmd.rows
                continue
            m = DRIVER_RE.match(line)
            if m and cmd:
                table = cmd.variants.setdefault(m.group(1), {})
                continue
            if cmd is None:
                continue
            if line.strip() == 'Arguments: none.':
                cmd.says_none = True
                continue
            m = ROW_RE.match(line)
            if m:
                path = m.group(1)
                assert path not in table, \
                    f'{DOC}:{lineno}: {cmd.name}: {path} listed twice'
                table[path] = (m.group(2).strip(), m.group(3).strip())
    return commands


def schema_paths(args, prefix=''):
    """{path: argument} with object members as 'parent.member'."""
    paths = {}
    for arg in args:
        path = prefix + arg['name']
        paths[path] = arg
        if arg.get('members'):
            paths.update(schema_paths(arg['members'], path + '.'))
    return paths


def check_table(what, rows, args):
    """The rows of one table document exactly @args."""
    schema = schema_paths(args)
    assert_eq(sorted(rows), sorted(schema), f'{what}: documented arguments')
    for path, (type_cell, required_cell) in rows.items():
        arg = schema[path]
        if required_cell in ('yes', 'no'):
            assert_eq(required_cell == 'yes', arg['required'],
                      f'{what}: is {path} required')
        if arg['type'] != 'any':
            assert_eq(type_cell, arg['type'], f'{what}: type of {path}')


def daemon_schemas(env):
    d = env.start([])
    qmp = env.qmp()
    listed = [c['name'] for c in qmp.cmd('query-commands')]
    schemas = {c['name']: c for c in qmp.cmd('x-query-command-args')}
    d.stop()
    return listed, schemas


@test
def test_every_command_documented(env):
    listed, schemas = daemon_schemas(env)
    doc = parse_doc()
    missing = sorted(set(listed) - set(doc))
    assert_eq(missing, [], f'commands missing from {DOC}')
    unknown = sorted(set(doc) - set(schemas))
    assert_eq(unknown, [], f'documented in {DOC} but not registered')


@test
def test_hidden_commands_are_internal(env):
    listed, schemas = daemon_schemas(env)
    doc = parse_doc()
    for name, cmd in doc.items():
        if name not in schemas:
            continue        # test_every_command_documented says so
        hidden = schemas[name]['hidden']
        assert_eq(cmd.internal, hidden,
                  f'{name}: documented under Internal iff hidden')
        assert_eq(name in listed, not hidden,
                  f'{name}: listed by query-commands iff not hidden')


@test
def test_arguments_documented(env):
    _, schemas = daemon_schemas(env)
    doc = parse_doc()
    for name, cmd in sorted(doc.items()):
        schema = schemas.get(name)
        if schema is None or 'variants' in schema:
            continue        # elsewhere: unknown, or blockdev-add
        assert_eq(cmd.variants, {}, f'{name}: driver tables')
        check_table(name, cmd.rows, schema['arguments'])
        assert_eq(cmd.says_none, not schema['arguments'],
                  f'{name}: says "Arguments: none." iff it has none')


@test
def test_blockdev_add_documented(env):
    _, schemas = daemon_schemas(env)
    schema = schemas['blockdev-add']
    cmd = parse_doc()['blockdev-add']
    check_table('blockdev-add common options', cmd.rows, schema['base'])
    assert_eq(sorted(cmd.variants), sorted(schema['variants']),
              'blockdev-add: drivers documented')
    for driver, args in schema['variants'].items():
        check_table(f'blockdev-add driver {driver}', cmd.variants[driver],
                    args)
    # The command's own schema is the union of the documented tables.
    union = {a['name'] for a in schema['base']}
    for args in schema['variants'].values():
        union |= {a['name'] for a in args}
    assert_eq(sorted(a['name'] for a in schema['arguments']), sorted(union),
              "blockdev-add's schema")


@test
def test_blockdev_create_documented(env):
    _, schemas = daemon_schemas(env)
    schema = schemas['blockdev-create']
    cmd = parse_doc()['blockdev-create']
    assert_eq(sorted(cmd.variants), sorted(schema['variants']),
              'blockdev-create: drivers documented')
    for driver, args in schema['variants'].items():
        check_table(f'blockdev-create driver {driver}', cmd.variants[driver],
                    args)


if __name__ == '__main__':
    main()
