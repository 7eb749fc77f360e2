#!/usr/bin/env python3
"""Record the exact behaviour of the real qemu-ga as golden data.

    scripts/record-golden.py [--bin PATH] [--out DIR] [--only protocol|cli] [-k SUBSTR]
    scripts/record-golden.py --verify [--bin PATH]    # replay the golden files, compare

Defaults: --bin target/ref/qemu-ga-10/usr/sbin/qemu-ga (see scripts/fetch-qemu-ga.sh),
--out tests/golden.  Writes DIR/qemu-ga-10.jsonl (protocol cases) and
DIR/cli-10.jsonl (command-line cases).  The formats are described in
tests/golden/README.md.

Protocol cases: every case gets a FRESH agent
    qemu-ga -m unix-listen -p T/sock -t T -f T/pid        (cwd = T, a new temp dir)
started with a fixed environment (AGENT_ENV below) and argv[0] = "qemu-ga".
The recorder connects (retrying until the socket exists), sends each step's
bytes, reads the replies, and finally stops the agent with SIGTERM and
records its exit status.

Each step's reply is read until the step's expected number of newline
characters arrived, then for a further SETTLE seconds to make sure nothing
else comes; the number of lines actually observed is what is written as
`expect_lines` (a mismatch with the count written in this file is reported as
a warning so it can be reviewed).
"""

import argparse
import base64
import json
import os
import re
import select
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DEFAULT_BIN = os.path.join(ROOT, "target/ref/qemu-ga-10/usr/sbin/qemu-ga")

# Environment of the recorded agent (and so of the processes it spawns).
AGENT_ENV = {
    "PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
    "LC_ALL": "C",
    "QGA_CONF": "/nonexistent/qemu-ga.conf",
}
# Environment of the command-line runs (QGA_CONF is added per case).
CLI_ENV = {
    "PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
    "LC_ALL": "C",
}

STEP_TIMEOUT = 15.0  # seconds to wait for the expected lines of one step
SETTLE = 0.4  # seconds of silence required after the expected lines
POLL_TIMEOUT = 20.0
POLL_INTERVAL = 0.05

PID_RE = re.compile(rb'"pid": (\d+)')

warnings = []


def warn(msg):
    warnings.append(msg)
    print("WARNING: " + msg, file=sys.stderr)


# --------------------------------------------------------------------------
# case definitions
# --------------------------------------------------------------------------

def J(obj):
    """Compact JSON + newline, as bytes (non-ASCII escaped by json.dumps)."""
    return (json.dumps(obj, separators=(",", ":")) + "\n").encode()


def S(send, lines=1, poll=False, reconnect=False):
    if isinstance(send, str):
        send = send.encode("utf-8")
    st = {"send": send, "lines": lines}
    if poll:
        st["poll"] = True
    if reconnect:
        st["reconnect"] = True
    return st


class Case:
    """A case needing extra agent arguments: Case(steps, agent_args=[...])."""

    def __init__(self, steps, agent_args):
        self.steps = steps
        self.agent_args = agent_args


def ping_id(raw_id_json):
    """guest-ping whose id is given as raw JSON text (bytes or str)."""
    if isinstance(raw_id_json, str):
        raw_id_json = raw_id_json.encode("utf-8")
    return b'{"execute":"guest-ping","id":' + raw_id_json + b"}\n"


def exe(args, id=None):
    o = {"execute": "guest-exec", "arguments": args}
    if id is not None:
        o["id"] = id
    return J(o)


STATUS_PID = b'{"execute":"guest-exec-status","arguments":{"pid":$PID}}\n'


def exec_and_wait(args, extra_status_after=False):
    steps = [S(exe(args)), S(STATUS_PID, poll=True)]
    if extra_status_after:
        steps.append(S(STATUS_PID))
    return steps


BASH_LOOP = "for i in $(seq 4); do if (( $i % 2 )); then echo stdout; else echo stderr 1>&2; fi; done;"
OUT_ERR = "echo out; echo err >&2"


def nest(n, wrap):
    """n levels of nesting in total (counting braces + brackets)."""
    if wrap:
        # {"execute":"guest-ping","id":[[...]]}  -> outer brace + (n-1) brackets
        return b'{"execute":"guest-ping","id":' + b"[" * (n - 1) + b"]" * (n - 1) + b"}\n"
    return b"[" * n + b"]" * n + b"\n"


CASES = [
    # ---- sync ------------------------------------------------------------
    ("sync-123456", [S(J({"execute": "guest-sync", "arguments": {"id": 123456}}))]),
    ("sync-1700000000123", [S(J({"execute": "guest-sync", "arguments": {"id": 1700000000123}}))]),
    ("sync-with-toplevel-id", [S(J({"execute": "guest-sync", "arguments": {"id": 7}, "id": "t"}))]),
    ("sync-id-string", [S(J({"execute": "guest-sync", "arguments": {"id": "x"}}))]),
    ("sync-id-missing", [S(J({"execute": "guest-sync"}))]),
    ("sync-id-float", [S(b'{"execute":"guest-sync","arguments":{"id":1.0}}\n')]),
    ("sync-id-negative", [S(J({"execute": "guest-sync", "arguments": {"id": -5}}))]),
    ("sync-id-int64-max", [S(b'{"execute":"guest-sync","arguments":{"id":9223372036854775807}}\n')]),
    ("sync-id-uint64-max", [S(b'{"execute":"guest-sync","arguments":{"id":18446744073709551615}}\n')]),
    ("ff-then-sync-delimited",
     [S(b"\xff"), S(J({"execute": "guest-sync-delimited", "arguments": {"id": 123456}}))]),
    ("ff-and-sync-delimited-one-send",
     [S(b"\xff" + J({"execute": "guest-sync-delimited", "arguments": {"id": 42}}), 2)]),
    ("sync-delimited-missing-id", [S(J({"execute": "guest-sync-delimited"}))]),
    ("sync-delimited-with-toplevel-id",
     [S(J({"execute": "guest-sync-delimited", "arguments": {"id": 9}, "id": 1}))]),
    ("lone-ff", [S(b"\xff")]),
    ("two-ff", [S(b"\xff\xff", 2)]),
    ("ff-then-ping", [S(b"\xff"), S(b'{"execute":"guest-ping"}\n')]),

    # ---- ping and ids ----------------------------------------------------
    ("ping", [S(b'{"execute":"guest-ping"}\n')]),
    ("ping-id-1", [S(ping_id("1"))]),
    ("ping-id-abc", [S(ping_id('"abc"'))]),
    ("ping-id-object", [S(ping_id('{"b":1,"a":[1,2.5,null,true]}'))]),
    ("ping-id-1.0", [S(ping_id("1.0"))]),
    ("ping-id-0.1", [S(ping_id("0.1"))]),
    ("ping-id-1e3", [S(ping_id("1e3"))]),
    ("ping-id--0", [S(ping_id("-0"))]),
    ("ping-id--0.0", [S(ping_id("-0.0"))]),
    ("ping-id-1e400", [S(ping_id("1e400"))]),
    ("ping-id-uint64-max", [S(ping_id("18446744073709551615"))]),
    ("ping-id-uint64-max-plus-1", [S(ping_id("18446744073709551616"))]),
    ("ping-id-int64-min", [S(ping_id("-9223372036854775808"))]),
    ("ping-id-int64-min-minus-1", [S(ping_id("-9223372036854775809"))]),
    ("ping-id-null", [S(ping_id("null"))]),
    ("ping-id-false", [S(ping_id("false"))]),
    ("ping-id-empty-list", [S(ping_id("[]"))]),
    ("ping-id-empty-object", [S(ping_id("{}"))]),
    ("ping-id-nonascii-escaped", [S(ping_id('"\\u00e9\\u20ac\\ud83d\\ude00"'))]),
    ("ping-id-nonascii-raw-utf8", [S(ping_id('"\u00e9\u20ac\U0001F600"'))]),
    ("ping-id-escapes", [S(ping_id('"a\\"b\\\\c\\/d\\b\\f\\n\\r\\t\\u0001\\u007f"'))]),
    ("ping-id-single-quoted-with-dquote", [S(ping_id("'it\\'s \"q\"'"))]),
    ("ping-id-u0000", [S(ping_id('"a\\u0000b"'))]),
    ("ping-id-lone-high-surrogate", [S(ping_id('"\\ud83d"'))]),
    ("ping-id-lone-low-surrogate", [S(ping_id('"\\ude00"'))]),
    ("ping-id-ufffe", [S(ping_id('"\\ufffe"'))]),
    ("ping-id-overlong-utf8", [S(ping_id(b'"\xc0\x80"'))]),
    ("ping-id-utf8-surrogate-encoded", [S(ping_id(b'"\xed\xa0\x80"'))]),
    ("ping-id-utf8-fe-byte", [S(ping_id(b'"\xfe"'), 2)]),

    # ---- request syntax --------------------------------------------------
    ("single-quoted", [S(b"{'execute':'guest-ping'}\n")]),
    ("multi-line-pretty",
     [S(b'{\n  "execute": "guest-ping",\r\n\t"id": 5\n}\n')]),
    ("two-requests-one-send",
     [S(b'{"execute":"guest-ping","id":1}{"execute":"guest-ping","id":2}', 2)]),
    ("two-requests-newline-separated",
     [S(b'{"execute":"guest-ping","id":1}\n{"execute":"guest-ping","id":2}\n', 2)]),
    ("no-trailing-newline", [S(b'{"execute":"guest-ping"}')]),
    ("request-split-over-sends",
     [S(b'{"execute":"gue', 0), S(b'st-ping","id":3}\n')]),
    ("garbage", [S(b"garbage\n")]),
    ("number-42", [S(b"42\n")]),
    ("number-42-no-newline-then-newline", [S(b"42", 0), S(b"\n")]),
    ("empty-array", [S(b"[]")]),
    ("empty-object", [S(b"{}")]),
    ("null", [S(b"null\n")]),
    ("string", [S(b'"str"')]),
    ("stray-rcurly", [S(b"}")]),
    ("stray-rsquare", [S(b"]")]),
    ("execute-not-string", [S(b'{"execute":1}')]),
    ("arguments-is-list", [S(b'{"execute":"guest-ping","arguments":[]}')]),
    ("exec-oob", [S(b'{"exec-oob":"guest-ping"}')]),
    ("exec-oob-with-id", [S(b'{"exec-oob":"guest-ping","id":1}')]),
    ("extra-member", [S(b'{"execute":"guest-ping","foo":1}')]),
    ("extra-member-with-id", [S(b'{"execute":"guest-ping","foo":1,"id":2}')]),
    ("unexpected-argument", [S(b'{"execute":"guest-ping","arguments":{"foo":42}}')]),
    ("unexpected-argument-with-id", [S(b'{"execute":"guest-ping","arguments":{"foo":42},"id":"i"}')]),
    ("unknown-command", [S(b'{"execute":"guest-nope"}')]),
    ("unknown-command-with-id", [S(b'{"execute":"guest-nope","id":[1]}')]),
    ("empty-command-name", [S(b'{"execute":""}')]),
    ("lacks-execute-with-id", [S(b'{"id":1}')]),
    ("duplicate-key", [S(b'{"execute":"guest-ping","execute":"guest-ping"}')]),
    ("missing-colon", [S(b'{"a" 1}')]),
    ("key-not-string", [S(b"{1:2}")]),
    ("missing-comma-dict", [S(b'{"a":1 "b":2}')]),
    ("missing-comma-list", [S(b"[1 2]")]),
    ("missing-value", [S(b'{"a":}')]),
    ("trailing-comma-dict", [S(b'{"a":1,}')]),
    ("trailing-comma-list", [S(b"[1,]")]),
    ("bad-escape-u12G4-single", [S(b"'\\u12G4'\n")]),
    ("bad-escape-u12G4-in-request", [S(b'{"execute":"guest-ping","id":"\\u12G4"}\n')]),
    ("bad-escape-x", [S(b'{"execute":"guest-ping","id":"\\x"}\n')]),
    ("invalid-utf8-in-string", [S(b'{"execute":"guest-ping","id":"\xc3\x28"}\n')]),
    ("invalid-utf8-lone-continuation", [S(b'{"execute":"guest-ping","id":"\x80"}\n')]),
    ("control-0x01-outside-string", [S(b'{"execute":\x01"guest-ping"}\n', 2)]),
    ("control-0x01-inside-string", [S(b'{"execute":"guest\x01ping"}\n', 2)]),
    ("control-0x01-alone", [S(b"\x01")]),
    ("raw-tab-inside-string", [S(b'{"execute":"guest-ping","id":"a\tb"}\n', 2)]),
    ("high-byte-outside-string", [S(b"\xc3\xa9\n")]),
    ("leading-zero-01", [S(b"01\n")]),
    ("minus-p", [S(b"-p\n")]),
    ("keyword-tru", [S(b"tru\n")]),
    ("keyword-true", [S(b"true\n")]),
    ("keyword-nul-in-request", [S(b'{"execute":"guest-ping","id":nul}\n')]),
    ("number-1.-bad", [S(b"1.\n")]),
    ("partial-then-ff", [S(b'{"execute":"gue', 0), S(b"\xff")]),
    ("partial-then-ff-then-ping",
     [S(b'{"execute":"gue', 0), S(b"\xff"), S(b'{"execute":"guest-ping","id":1}\n')]),
    ("partial-object-then-ff",
     [S(b'{"execute":"guest-ping",', 0), S(b"\xff")]),
    ("error-then-recovery-same-send",
     [S(b'{"execute":\x01"guest-ping"}{"execute":"guest-ping","id":1}\n', 3)]),
    ("nesting-1024-array", [S(nest(1024, False))]),
    ("nesting-1025-array", [S(nest(1025, False), 1026)]),
    ("nesting-1024-in-id", [S(nest(1024, True))]),
    ("nesting-1025-in-id", [S(nest(1025, True), 1026)]),
    ("nesting-10000", [S(b"[" * 10000 + b"]" * 10000 + b"\n", 9235)]),
    ("nesting-1025-then-ping",
     [S(nest(1025, False), 1026), S(b'{"execute":"guest-ping","id":"after"}\n')]),

    # ---- guest-info / shutdown ------------------------------------------
    ("guest-info", [S(b'{"execute":"guest-info"}\n')]),
    ("blocked-rpcs",
     Case([S(b'{"execute":"guest-ping","id":1}\n'), S(b'{"execute":"guest-get-time"}\n'),
           S(b'{"execute":"guest-nope"}\n'), S(b'{"execute":"guest-info"}\n')],
          ["-b", "guest-ping,guest-get-time,guest-nope"])),
    ("allowed-rpcs",
     Case([S(b'{"execute":"guest-ping"}\n'), S(exe({"path": "true"}, id=1)),
           S(b'{"execute":"guest-info"}\n')],
          ["-a", "guest-ping,guest-info"])),
    ("blocked-and-allowed-rpcs",
     Case([S(b'{"execute":"guest-ping"}\n'), S(b'{"execute":"guest-sync","arguments":{"id":1}}\n'),
           S(b'{"execute":"guest-get-time"}\n')],
          ["-a", "guest-ping,guest-sync", "-b", "guest-ping"])),
    ("blocked-rpcs-bad-args-still-disabled",
     Case([S(b'{"execute":"guest-ping","arguments":{"x":1}}\n')], ["-b", "guest-ping"])),
    # the JSON parser is not reset when a client disconnects
    ("parser-state-survives-reconnect",
     [S(b'{"execute":"gue', 0), S(b'st-ping","id":"re"}\n', reconnect=True)]),
    ("ff-inside-string", [S(b'{"execute":"guest-ping","id":"\xff"}\n', 2)]),
    ("guest-shutdown-bogus-mode", [S(J({"execute": "guest-shutdown", "arguments": {"mode": "bogus"}}))]),

    # ---- guest-exec argument validation ----------------------------------
    ("exec-missing-path", [S(exe({}))]),
    ("exec-missing-path-with-id", [S(exe({}, id=3))]),
    ("exec-path-1", [S(exe({"path": 1}))]),
    ("exec-arg-not-list", [S(exe({"path": "true", "arg": "x"}))]),
    ("exec-arg-int-element", [S(exe({"path": "true", "arg": [1]}))]),
    ("exec-env-int-element", [S(exe({"path": "true", "env": ["A=1", 2]}))]),
    ("exec-capture-5", [S(exe({"path": "true", "capture-output": 5}))]),
    ("exec-capture-bogus", [S(exe({"path": "true", "capture-output": "bogus"}))]),
    ("exec-capture-null", [S(exe({"path": "true", "capture-output": None}))]),
    ("exec-input-data-invalid-base64", [S(exe({"path": "true", "input-data": "!!!"}))]),
    ("exec-input-data-int", [S(exe({"path": "true", "input-data": 1}))]),
    ("exec-unknown-argument", [S(exe({"path": "true", "cwd": "/"}))]),
    ("exec-invalid-cmd42", [S(exe({"path": "/bin/invalid-cmd42"}))]),
    ("exec-invalid-cmd42-with-id", [S(exe({"path": "/bin/invalid-cmd42"}, id="e"))]),
    ("exec-not-in-path", [S(exe({"path": "invalid-cmd42"}))]),
    ("exec-permission-denied", [S(exe({"path": "/etc/passwd"}))]),
    ("exec-directory", [S(exe({"path": "/"}))]),
    ("status-pid-0", [S(b'{"execute":"guest-exec-status","arguments":{"pid":0}}\n')]),
    ("status-pid-0-with-id", [S(b'{"execute":"guest-exec-status","arguments":{"pid":0},"id":4}\n')]),
    ("status-pid-string", [S(b'{"execute":"guest-exec-status","arguments":{"pid":"1"}}\n')]),
    ("status-pid-1.5", [S(b'{"execute":"guest-exec-status","arguments":{"pid":1.5}}\n')]),
    ("status-pid-missing", [S(b'{"execute":"guest-exec-status"}\n')]),
    ("status-pid-negative", [S(b'{"execute":"guest-exec-status","arguments":{"pid":-1}}\n')]),
    ("status-pid-uint64-max", [S(b'{"execute":"guest-exec-status","arguments":{"pid":18446744073709551615}}\n')]),

    # ---- guest-exec runs ---------------------------------------------------
    ("exec-echo-test-str-consumed",
     exec_and_wait({"path": "echo", "arg": ["-n", '" test_str "'], "capture-output": True},
                   extra_status_after=True)),
    ("exec-echo-with-ids",
     [S(exe({"path": "echo", "arg": ["hi"], "capture-output": True}, id=7)),
      S(b'{"execute":"guest-exec-status","arguments":{"pid":$PID},"id":8}\n', poll=True)]),
    ("exec-bash-separated", exec_and_wait({"path": "bash", "arg": ["-c", BASH_LOOP], "capture-output": "separated"})),
    ("exec-bash-merged", exec_and_wait({"path": "bash", "arg": ["-c", BASH_LOOP], "capture-output": "merged"})),
    ("exec-exit-3", exec_and_wait({"path": "sh", "arg": ["-c", "exit 3"]})),
    ("exec-exit-3-capture", exec_and_wait({"path": "sh", "arg": ["-c", "exit 3"], "capture-output": True})),
    ("exec-kill-9", exec_and_wait({"path": "sh", "arg": ["-c", "kill -9 $$"]})),
    ("exec-kill-9-capture", exec_and_wait({"path": "sh", "arg": ["-c", "kill -9 $$"], "capture-output": True})),
    ("exec-cat-input-data",
     exec_and_wait({"path": "cat", "input-data": "aGVsbG8=", "capture-output": True})),
    ("exec-cat-input-data-empty",
     exec_and_wait({"path": "cat", "input-data": "", "capture-output": True})),
    ("exec-cat-no-input-stdin-devnull",
     exec_and_wait({"path": "cat", "capture-output": True})),
    ("exec-cat-input-bad-padding",
     exec_and_wait({"path": "cat", "input-data": "aGk", "capture-output": True})),
    ("exec-cat-input-with-newline",
     exec_and_wait({"path": "cat", "input-data": "aGVs\nbG8=", "capture-output": True})),
    ("exec-capture-stdout", exec_and_wait({"path": "sh", "arg": ["-c", OUT_ERR], "capture-output": "stdout"})),
    ("exec-capture-stderr", exec_and_wait({"path": "sh", "arg": ["-c", OUT_ERR], "capture-output": "stderr"})),
    ("exec-capture-separated", exec_and_wait({"path": "sh", "arg": ["-c", OUT_ERR], "capture-output": "separated"})),
    ("exec-capture-merged", exec_and_wait({"path": "sh", "arg": ["-c", OUT_ERR], "capture-output": "merged"})),
    ("exec-capture-none", exec_and_wait({"path": "sh", "arg": ["-c", OUT_ERR], "capture-output": "none"})),
    ("exec-capture-true", exec_and_wait({"path": "sh", "arg": ["-c", OUT_ERR], "capture-output": True})),
    ("exec-capture-false", exec_and_wait({"path": "sh", "arg": ["-c", OUT_ERR], "capture-output": False})),
    ("exec-no-capture", exec_and_wait({"path": "sh", "arg": ["-c", OUT_ERR]})),
    ("exec-empty-output-capture", exec_and_wait({"path": "true", "capture-output": True})),
    ("exec-empty-output-merged", exec_and_wait({"path": "true", "capture-output": "merged"})),
    ("exec-env-empty", exec_and_wait({"path": "env", "env": [], "capture-output": True})),
    ("exec-env-replaced", exec_and_wait({"path": "env", "env": ["A=1", "B=two words", "NOEQUALS"], "capture-output": True})),
    ("exec-env-inherited", exec_and_wait({"path": "env", "capture-output": True})),
    ("exec-argv0-is-path", exec_and_wait({"path": "sh", "arg": ["-c", "echo $0"], "capture-output": True})),
    ("exec-stdin-eof-wc", exec_and_wait({"path": "wc", "arg": ["-c"], "input-data": "MTIzNDU2Nzg5MA==", "capture-output": True})),
    ("exec-binary-output",
     exec_and_wait({"path": "printf", "arg": ["\\000\\001\\377\\n"], "capture-output": True})),
    ("exec-large-output-64k",
     exec_and_wait({"path": "head", "arg": ["-c", "65536", "/dev/zero"], "capture-output": True})),
    # SIGPIPE must be back to SIG_DFL in the child: `yes` dies of signal 13 (status 141)
    ("exec-sigpipe-default",
     exec_and_wait({"path": "bash", "arg": ["-c", "yes | head -n 1; echo ${PIPESTATUS[0]}"],
                    "capture-output": True})),
    # fds >= 3 of the agent are not inherited
    ("exec-no-inherited-fds",
     exec_and_wait({"path": "sh", "arg": ["-c", "ls /proc/self/fd | sort -n | tr '\\n' ' '"],
                    "capture-output": True})),
    ("exec-stdin-devnull-no-capture-readlink",
     exec_and_wait({"path": "readlink", "arg": ["/proc/self/fd/0"], "capture-output": "stdout"})),
    ("exec-stdout-mode-stderr-is-devnull",
     exec_and_wait({"path": "readlink", "arg": ["/proc/self/fd/2"], "capture-output": "stdout"})),
    ("exec-relative-path-with-slash", [S(exe({"path": "./nonexistent"}))]),
    ("exec-arg-empty-list", exec_and_wait({"path": "echo", "arg": [], "capture-output": True})),
    # PATH lookup uses the PATH of the supplied env when it has one ...
    ("exec-env-path-lookup-from-env",
     [S(exe({"path": "echo", "arg": ["x"], "env": ["PATH=/nonexistent"], "capture-output": True}))]),
    # ... and the agent's own PATH otherwise
    ("exec-env-without-path-lookup",
     exec_and_wait({"path": "echo", "arg": ["x"], "env": ["A=1"], "capture-output": True})),
    ("exec-not-yet-exited",
     [S(exe({"path": "sleep", "arg": ["1"]})), S(STATUS_PID), S(STATUS_PID, poll=True),
      S(STATUS_PID)]),
    ("exec-two-in-flight",
     [S(exe({"path": "sh", "arg": ["-c", "echo first"], "capture-output": True})),
      S(STATUS_PID, poll=True),
      S(exe({"path": "sh", "arg": ["-c", "echo second"], "capture-output": True})),
      S(STATUS_PID, poll=True)]),
]


def cli_cases():
    """(name, argv-after-argv0, env-extra, files) ; files: {placeholder: content}"""
    good_conf = (
        "[general]\n"
        "daemon=false\n"
        "method=virtio-serial\n"
        "path=/path/to/org.qemu.guest_agent.0\n"
        "pidfile=/var/foo/qemu-ga.pid\n"
        "statedir=/var/state\n"
        "verbose=true\n"
        "block-rpcs=guest-ping;guest-get-time\n"
    )
    full_conf = (
        "[general]\n"
        "daemon=true\n"
        "method=unix-listen\n"
        "path=/tmp/qga.sock\n"
        "logfile=/tmp/qga.log\n"
        "pidfile=/tmp/qga.pid\n"
        "fsfreeze-hook=/tmp/hook\n"
        "statedir=/tmp/state\n"
        "verbose=false\n"
        "retry-path=true\n"
        "block-rpcs=guest-exec,guest-ping\n"
        "allow-rpcs=guest-info\n"
    )
    bad_conf = "[general\ndaemon=false\n"
    bad_bool = "[general]\nverbose=maybe\n"
    unknown_key = "[general]\nfoo=bar\nmethod=isa-serial\n"
    return [
        ("version-V", ["-V"], {}, {}),
        ("version-long", ["--version"], {}, {}),
        ("help-h", ["-h"], {}, {}),
        ("help-long", ["--help"], {}, {}),
        ("unknown-short-x", ["-x"], {}, {}),
        ("unknown-long-bogus", ["--bogus"], {}, {}),
        ("method-missing-argument", ["-m"], {}, {}),
        ("method-bogus", ["-m", "bogus", "-p", "/tmp/x"], {}, {}),
        ("unix-listen-no-path", ["-m", "unix-listen"], {}, {}),
        ("vsock-listen-no-path", ["-m", "vsock-listen"], {}, {}),
        ("block-rpcs-help", ["-b", "help"], {}, {}),
        ("block-rpcs-question", ["-b", "?"], {}, {}),
        ("allow-rpcs-help", ["-a", "help"], {}, {}),
        ("allow-rpcs-question", ["-a", "?"], {}, {}),
        ("dump-conf-defaults", ["-D"], {}, {}),
        ("dump-conf-long", ["--dump-conf"], {}, {}),
        ("dump-conf-options",
         ["-D", "-m", "unix-listen", "-p", "/tmp/s", "-t", "/tmp/st", "-v",
          "-b", "guest-ping,guest-exec", "-a", "guest-info"], {}, {}),
        ("dump-conf-all-options",
         ["-D", "-d", "-r", "-m", "isa-serial", "-l", "/tmp/log", "-f", "/tmp/pid",
          "-F/tmp/hook", "-b", "a,b", "-b", "c", "-a", "x"], {}, {}),
        ("dump-conf-fsfreeze-hook-default", ["-D", "-F"], {}, {}),
        ("dump-conf-long-options",
         ["--dump-conf", "--method=unix-listen", "--path=/tmp/s", "--statedir=/tmp/st",
          "--block-rpcs=guest-ping", "--allow-rpcs=guest-info,guest-ping"], {}, {}),
        ("dump-conf-qga-conf-test-data", ["-D"], {"QGA_CONF": "$CONF"}, {"$CONF": good_conf}),
        ("dump-conf-qga-conf-all-keys", ["-D"], {"QGA_CONF": "$CONF"}, {"$CONF": full_conf}),
        ("dump-conf-qga-conf-plus-cli",
         ["-D", "-m", "unix-listen", "-p", "/tmp/cli.sock", "-b", "guest-info", "-a", "guest-sync"],
         {"QGA_CONF": "$CONF"}, {"$CONF": full_conf}),
        ("dump-conf-c-option", ["-c", "$CONF", "-D"], {}, {"$CONF": good_conf}),
        ("config-c-nonexistent", ["-c", "/nonexistent", "-D"], {}, {}),
        ("qga-conf-nonexistent", ["-D"], {"QGA_CONF": "/nonexistent"}, {}),
        ("config-syntax-error", ["-D"], {"QGA_CONF": "$CONF"}, {"$CONF": bad_conf}),
        ("config-syntax-error-c", ["-c", "$CONF", "-D"], {}, {"$CONF": bad_conf}),
        ("config-bad-boolean", ["-D"], {"QGA_CONF": "$CONF"}, {"$CONF": bad_bool}),
        ("config-unknown-key", ["-D"], {"QGA_CONF": "$CONF"}, {"$CONF": unknown_key}),
        ("statedir-relative-dump", ["-D", "-t", "relative"], {}, {}),
    ]


# --------------------------------------------------------------------------
# protocol recording
# --------------------------------------------------------------------------

class Agent:
    def __init__(self, binary, extra_args=()):
        self.dir = tempfile.mkdtemp(prefix="qga-golden.")
        self.sock_path = os.path.join(self.dir, "sock")
        argv = ["qemu-ga", "-m", "unix-listen", "-p", self.sock_path, "-t", self.dir,
                "-f", os.path.join(self.dir, "pid")] + list(extra_args)
        self.stderr = open(os.path.join(self.dir, "stderr.log"), "wb")
        self.proc = subprocess.Popen(argv, executable=binary, cwd=self.dir, env=AGENT_ENV,
                                     stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                     stderr=self.stderr)
        self.sock = self._connect()
        self.sock.setblocking(False)

    def reconnect(self):
        self.sock.close()
        time.sleep(0.2)  # let the agent see the hang-up and re-arm accept()
        self.sock = self._connect()
        self.sock.setblocking(False)

    def _connect(self):
        deadline = time.monotonic() + 10
        while True:
            if self.proc.poll() is not None:
                self.stderr.close()
                with open(os.path.join(self.dir, "stderr.log"), "rb") as f:
                    err = f.read()[-300:]
                shutil.rmtree(self.dir, ignore_errors=True)
                raise RuntimeError("agent exited early with %s: %r" % (self.proc.returncode, err))
            if os.path.exists(self.sock_path):
                s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
                try:
                    s.connect(self.sock_path)
                    return s
                except OSError:
                    s.close()
            if time.monotonic() > deadline:
                raise RuntimeError("could not connect to agent socket")
            time.sleep(0.02)

    def exchange(self, data, want_lines, settle=SETTLE):
        """Send data (while reading), then read until want_lines '\\n' arrived
        (want_lines None: until silence), then SETTLE s of silence."""
        buf = bytearray()
        out = memoryview(data)
        deadline = time.monotonic() + STEP_TIMEOUT
        quiet_since = None
        while True:
            now = time.monotonic()
            have = buf.count(b"\n")
            if not out:
                done_lines = want_lines is None or have >= want_lines
                if done_lines:
                    if quiet_since is None:
                        quiet_since = now
                    if now - quiet_since >= settle:
                        return bytes(buf)
            if now > deadline:
                if want_lines is not None and have < want_lines:
                    warn("timeout waiting for %d lines (got %d)" % (want_lines, have))
                return bytes(buf)
            r, w, _ = select.select([self.sock], [self.sock] if out else [], [], 0.05)
            if w:
                n = self.sock.send(out[:65536])
                out = out[n:]
            if r:
                chunk = self.sock.recv(1 << 20)
                if not chunk:
                    warn("agent closed connection")
                    return bytes(buf)
                buf += chunk
                quiet_since = None

    def stop(self):
        try:
            self.sock.close()
        except OSError:
            pass
        # qemu-ga's SIGTERM handler calls g_main_loop_quit() (not
        # async-signal-safe): a signal that lands while the main loop holds
        # its context lock deadlocks the agent on a futex (seen ~1 in 60 when
        # SIGTERM follows the disconnect immediately).  Let it go idle first.
        time.sleep(0.2)
        self.proc.send_signal(signal.SIGTERM)
        try:
            status = self.proc.wait(5)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            status = "hang"
        self.stderr.close()
        shutil.rmtree(self.dir, ignore_errors=True)
        return status


class AgentHang(Exception):
    pass


def record_protocol_case(binary, name, steps):
    for attempt in range(3):
        try:
            return record_protocol_case_once(binary, name, steps)
        except AgentHang:
            print("  %s: agent hung on SIGTERM (qemu-ga signal-handler deadlock), retrying"
                  % name, file=sys.stderr)
    raise RuntimeError("%s: agent hung on SIGTERM 3 times" % name)


def record_protocol_case_once(binary, name, steps):
    agent_args = []
    if isinstance(steps, Case):
        steps, agent_args = steps.steps, steps.agent_args
    agent = Agent(binary, agent_args)
    pid = None
    out_steps, replies = [], []
    try:
        for st in steps:
            send = st["send"]
            if st.get("reconnect"):
                agent.reconnect()
            if b"$PID" in send:
                if pid is None:
                    raise RuntimeError("%s: $PID used before any pid reply" % name)
                send = send.replace(b"$PID", pid)
            if st.get("poll"):
                t0 = time.monotonic()
                while True:
                    reply = agent.exchange(send, 1, settle=0.0)
                    if b'"exited": true' in reply or b'"error"' in reply:
                        break
                    if time.monotonic() - t0 > POLL_TIMEOUT:
                        raise RuntimeError("%s: process never exited" % name)
                    time.sleep(POLL_INTERVAL)
                # make sure nothing else follows
                reply += agent.exchange(b"", 0)
            else:
                reply = agent.exchange(send, st["lines"])
            m = PID_RE.search(reply)
            if m:
                pid = m.group(1)
                reply = PID_RE.sub(b'"pid": $PID', reply)
            observed = reply.count(b"\n")
            if st["lines"] is not None and observed != st["lines"]:
                warn("%s: step expected %s lines, observed %d: %r"
                     % (name, st["lines"], observed, reply[:300]))
            if reply and not reply.endswith(b"\n"):
                warn("%s: reply does not end in newline: %r" % (name, reply[-100:]))
            step = {"send_b64": base64.b64encode(st["send"]).decode(), "expect_lines": observed}
            if st.get("poll"):
                step["poll_until_exited"] = True
            if st.get("reconnect"):
                step["reconnect_before"] = True
            out_steps.append(step)
            replies.append(base64.b64encode(reply).decode())
    finally:
        status = agent.stop()
    if status == "hang":
        raise AgentHang()
    if status != 0:
        warn("%s: agent exit status %r" % (name, status))
    rec = {"name": name}
    if agent_args:
        rec["agent_args"] = agent_args
    rec.update({"steps": out_steps, "replies_b64": replies,
                "exit_status": status if isinstance(status, int) else -999})
    return rec


# --------------------------------------------------------------------------
# CLI recording
# --------------------------------------------------------------------------

# Non-deterministic parts of qemu-ga's stderr, replaced by placeholders:
#   qemu-ga log line prefix  "1795625356.687936: critical: ..."  -> "$TIMESTAMP: critical: ..."
#   GLib g_critical() lines  "** (process:8816): CRITICAL **: 16:49:16.691: ..."
#                         -> "** (process:$PID): CRITICAL **: $CLOCK: ..."
LOG_TS_RE = re.compile(rb"(?m)^\d+\.\d{6}: ")
GLIB_RE = re.compile(rb"\((process|[\w.-]+):\d+\): ([A-Za-z-]+ \*\*: )\d\d:\d\d:\d\d\.\d{3}: ")


def normalize_log(b):
    b = LOG_TS_RE.sub(b"$TIMESTAMP: ", b)
    b = GLIB_RE.sub(lambda m: b"(" + m.group(1) + b":$PID): " + m.group(2) + b"$CLOCK: ", b)
    return b


STATE_FILES = ["/var/run/qga.state", "/run/qga.state"]


def record_cli_case(binary, name, args, env_extra, files):
    # Cases without -t make qemu-ga create /var/run/qga.state before failing;
    # remove it again if it was not there before.
    existed = {f for f in STATE_FILES if os.path.lexists(f)}
    try:
        return record_cli_case_inner(binary, name, args, env_extra, files)
    finally:
        for f in STATE_FILES:
            if f not in existed and os.path.lexists(f):
                os.unlink(f)


def record_cli_case_inner(binary, name, args, env_extra, files):
    tmp = tempfile.mkdtemp(prefix="qga-cli.")
    subst = {}
    try:
        for ph, content in files.items():
            p = os.path.join(tmp, "qemu-ga.conf")
            with open(p, "w") as f:
                f.write(content)
            subst[ph] = p

        def sub(s):
            for ph, p in subst.items():
                s = s.replace(ph, p)
            return s

        argv = ["qemu-ga"] + [sub(a) for a in args]
        env = dict(CLI_ENV)
        env.update({k: sub(v) for k, v in env_extra.items()})
        try:
            p = subprocess.run(argv, executable=binary, cwd=tmp, env=env,
                               stdin=subprocess.DEVNULL, capture_output=True, timeout=10)
            status, out, err = p.returncode, p.stdout, p.stderr
        except subprocess.TimeoutExpired as e:
            warn("%s: timed out" % name)
            status, out, err = -999, e.stdout or b"", e.stderr or b""

        def unsub(b):
            for ph, p in subst.items():
                b = b.replace(p.encode(), ph.encode())
            b = b.replace(os.path.realpath(binary).encode(), b"$ARGV0")
            b = b.replace(os.path.abspath(binary).encode(), b"$ARGV0")
            return normalize_log(b)

        rec = {"name": name, "argv": args, "env": env_extra}
        if files:
            rec["files"] = files
        rec.update({
            "exit_status": status,
            "stdout_b64": base64.b64encode(unsub(out)).decode(),
            "stderr_b64": base64.b64encode(unsub(err)).decode(),
        })
        return rec
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


# --------------------------------------------------------------------------
# verification: replay the golden files against a binary (qemu-ga or qga)
# --------------------------------------------------------------------------

def verify_protocol_case(binary, rec, settle):
    """Replay one protocol record as tests/golden/README.md describes; return
    a list of mismatch descriptions (empty: identical)."""
    problems = []
    try:
        agent = Agent(binary, rec.get("agent_args", []))
    except Exception as e:  # noqa: BLE001
        return ["agent did not start: %s" % e]
    pid = None
    try:
        for i, (st, want_b64) in enumerate(zip(rec["steps"], rec["replies_b64"])):
            raw = base64.b64decode(st["send_b64"])
            if st.get("reconnect_before"):
                agent.reconnect()
            send = raw.replace(b"$PID", pid) if (pid is not None and b"$PID" in raw) else raw
            if st.get("poll_until_exited"):
                t0 = time.monotonic()
                while True:
                    got = agent.exchange(send, 1, settle=0.0)
                    if b'"exited": true' in got or b'"error"' in got or not got:
                        break
                    if time.monotonic() - t0 > POLL_TIMEOUT:
                        break
                    time.sleep(POLL_INTERVAL)
            else:
                got = agent.exchange(send, st["expect_lines"], settle=settle)
            m = PID_RE.search(got)
            if m:
                pid = m.group(1)
                got = PID_RE.sub(b'"pid": $PID', got)
            want = base64.b64decode(want_b64)
            if got != want:
                problems.append("step %d: sent %r\n      want %r\n      got  %r"
                                % (i, raw[:120], want[:400], got[:400]))
    except Exception as e:  # noqa: BLE001 - report, keep going
        problems.append("exception: %r" % e)
    finally:
        status = agent.stop()
    if status != rec["exit_status"]:
        problems.append("exit status: want %r got %r" % (rec["exit_status"], status))
    return problems


def verify(a, binary):
    failed = total = 0
    if a.only in (None, "protocol"):
        for line in open(os.path.join(a.out, "qemu-ga-%s.jsonl" % a.suffix)):
            rec = json.loads(line)
            if a.k and a.k not in rec["name"]:
                continue
            total += 1
            probs = verify_protocol_case(binary, rec, a.settle)
            if probs:
                failed += 1
                print("FAIL %s\n  %s" % (rec["name"], "\n  ".join(probs)))
            elif a.verbose:
                print("ok   %s" % rec["name"])
    if a.only in (None, "cli"):
        for line in open(os.path.join(a.out, "cli-%s.jsonl" % a.suffix)):
            rec = json.loads(line)
            if a.k and a.k not in rec["name"]:
                continue
            total += 1
            got = record_cli_case(binary, rec["name"], rec["argv"], rec["env"], rec.get("files", {}))
            diffs = [k for k in ("exit_status", "stdout_b64", "stderr_b64") if got[k] != rec[k]]
            if diffs:
                failed += 1
                print("FAIL cli %s" % rec["name"])
                for k in diffs:
                    w, g = rec[k], got[k]
                    if k.endswith("_b64"):
                        w, g = base64.b64decode(w), base64.b64decode(g)
                    print("  %s: want %r\n  %s  got  %r" % (k, w, " " * len(k), g))
            elif a.verbose:
                print("ok   cli %s" % rec["name"])
    print("%d passed, %d failed" % (total - failed, failed))
    return 1 if failed else 0


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--bin", default=DEFAULT_BIN)
    ap.add_argument("--out", default=os.path.join(ROOT, "tests/golden"))
    ap.add_argument("--suffix", default="10", help="file name suffix (qemu-ga-SUFFIX.jsonl)")
    ap.add_argument("--only", choices=["protocol", "cli"])
    ap.add_argument("-k", help="only cases whose name contains this; prints, does not write")
    ap.add_argument("--verify", action="store_true",
                    help="replay the golden files in --out against --bin and compare "
                         "(works for any agent, e.g. --bin target/debug/qga)")
    ap.add_argument("--settle", type=float, default=0.1,
                    help="--verify: seconds of silence required after each step's lines")
    ap.add_argument("-v", "--verbose", action="store_true")
    a = ap.parse_args()
    binary = os.path.abspath(a.bin)
    if not os.access(binary, os.X_OK):
        sys.exit("record-golden: %s not executable (run scripts/fetch-qemu-ga.sh)" % binary)
    if os.path.exists("/etc/qemu/qemu-ga.conf"):
        sys.exit("record-golden: /etc/qemu/qemu-ga.conf exists; it would change the CLI records")
    if a.verify:
        return verify(a, binary)
    version = subprocess.run([binary, "-V"], capture_output=True).stdout.decode().strip()
    print("recording %s (%s)" % (binary, version), file=sys.stderr)

    if a.only in (None, "protocol"):
        recs = []
        for name, steps in CASES:
            if a.k and a.k not in name:
                continue
            rec = record_protocol_case(binary, name, steps)
            recs.append(rec)
            print("  %-40s %s" % (name, [s["expect_lines"] for s in rec["steps"]]), file=sys.stderr)
        write(a, "qemu-ga-%s.jsonl" % a.suffix, recs)
    if a.only in (None, "cli"):
        recs = []
        for name, args, env, files in cli_cases():
            if a.k and a.k not in name:
                continue
            recs.append(record_cli_case(binary, name, args, env, files))
            print("  %-40s exit %s" % (name, recs[-1]["exit_status"]), file=sys.stderr)
        write(a, "cli-%s.jsonl" % a.suffix, recs)
    if warnings:
        print("%d warning(s):" % len(warnings), file=sys.stderr)
        for w in warnings:
            print("  " + w, file=sys.stderr)
        return 1
    return 0


def write(a, fname, recs):
    if a.k:
        for r in recs:
            print(json.dumps(r))
        return
    os.makedirs(a.out, exist_ok=True)
    path = os.path.join(a.out, fname)
    with open(path, "w") as f:
        for r in recs:
            f.write(json.dumps(r, ensure_ascii=True, separators=(",", ":")) + "\n")
    print("wrote %d records to %s" % (len(recs), path), file=sys.stderr)


if __name__ == "__main__":
    sys.exit(main())
