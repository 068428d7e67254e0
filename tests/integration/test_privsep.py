"""Privilege separation of a real zmeshd: the process that answers HTTP holds no
privilege, the privileged ones are small and single-threaded, and the spawner
refuses, on its real socket, whatever is outside its protocol (sent as a daemon
taken over by an attacker would: on the API process's own end of the channel,
taken with pidfd_getfd).
"""

import ctypes
import errno
import os
import socket
import stat
import struct

import pytest

from conftest import start_daemon, stop_and_check

SYS_PIDFD_OPEN = 434
SYS_PIDFD_GETFD = 438
MAGIC = 0x7A6D7370
OP_SPAWN, OP_ASSIGN, OP_KILL, OP_DESTROY = 1, 2, 3, 4
REP = struct.Struct("<IIiiIIIIQ")

libc = ctypes.CDLL(None, use_errno=True)
libc.syscall.restype = ctypes.c_long


@pytest.fixture(scope="module")
def zs():
    d = start_daemon("privsep")
    yield d
    stop_and_check(d)


def status(pid):
    with open("/proc/%d/status" % pid) as f:
        return dict(line.rstrip("\n").split(":\t", 1) for line in f if ":\t" in line)


def children(pid):
    out = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                if int(status(int(entry))["PPid"]) == pid:
                    out.append(int(entry))
            except (OSError, KeyError):
                pass
    return out


def socket_inodes(pid):
    found = {}
    for fd in os.listdir("/proc/%d/fd" % pid):
        try:
            target = os.readlink("/proc/%d/fd/%s" % (pid, fd))
        except OSError:
            continue
        if target.startswith("socket:["):
            found[int(target[8:-1])] = int(fd)
    return found


def listener_pid(port):
    """The process holding the listening TCP socket of port."""
    inodes = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        with open(table) as f:
            for line in f.readlines()[1:]:
                cols = line.split()
                if int(cols[1].rsplit(":", 1)[1], 16) == port and cols[3] == "0A":
                    inodes.add(int(cols[9]))
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                if inodes & set(socket_inodes(int(entry))):
                    return int(entry)
            except OSError:
                pass
    raise AssertionError("nobody listens on port %d" % port)


def test_listener_holds_no_privilege(zs):
    st = status(listener_pid(zs.port))
    assert all(int(x) != 0 for x in st["Uid"].split()), st["Uid"]
    assert all(int(x) != 0 for x in st["Gid"].split()), st["Gid"]
    for cap in ("CapInh", "CapPrm", "CapEff", "CapBnd", "CapAmb"):
        assert int(st[cap], 16) == 0, (cap, st[cap])
    assert st["NoNewPrivs"] == "1"
    assert st["Seccomp"] == "2"
    assert st["Groups"].strip() == ""
    # Threads still start under the filter (clone3 refused, clone allowed).
    assert int(st["Threads"]) > 1


def test_privileged_processes_are_small_and_single_threaded(zs):
    api = listener_pid(zs.port)
    supervisor = int(status(api)["PPid"])
    assert supervisor == zs.proc.pid
    sup = status(supervisor)
    assert sup["Uid"].split()[0] == "0" and sup["Threads"] == "1"
    spawners = [p for p in children(api) if status(p)["Name"] == "zmesh-spawner"]
    assert len(spawners) == 1, children(api)
    sp = status(spawners[0])
    assert sp["Uid"].split()[0] == "0" and sp["Threads"] == "1"
    # A program of its own, small: every sandbox's init is a copy of it.
    pid = spawners[0]
    assert os.path.basename(os.readlink("/proc/%d/exe" % pid)) == "zmesh-spawner"
    with open("/proc/%d/maps" % pid) as f:
        maps = f.read()
    assert "libpq" not in maps and "libssl" not in maps and "libmicrohttpd" not in maps, maps
    # Far fewer mappings than the API process (what a fork would have
    # copied), in every build: a sanitizer adds its own to both.
    with open("/proc/%d/maps" % api) as f:
        api_maps = f.read()
    assert len(maps.splitlines()) + 50 < len(api_maps.splitlines()), (len(maps.splitlines()),
                                                                       len(api_maps.splitlines()))
    # Nothing of the daemon's environment, and no descriptor beyond stdio
    # and its socket.
    with open("/proc/%d/environ" % pid, "rb") as f:
        env = [e for e in f.read().split(b"\0") if e]
    assert [e.split(b"=")[0] for e in env] == [b"ZMESH_NETNS_STOCK"], env
    fds = sorted(int(x) for x in os.listdir("/proc/%d/fd" % pid))
    assert fds[:4] == [0, 1, 2, 3], fds


def test_state_directory_ownership(zs):
    api_uid = int(status(listener_pid(zs.port))["Uid"].split()[0])
    st = os.stat(zs.state_dir)
    assert st.st_uid == 0 and not st.st_mode & 0o022
    key = os.stat(os.path.join(zs.state_dir, "jwt.key"))
    assert key.st_uid == api_uid and stat.S_IMODE(key.st_mode) == 0o600
    data = os.stat(os.path.join(zs.state_dir, "pg", "data"))
    assert data.st_uid != api_uid and data.st_uid != 0 and stat.S_IMODE(data.st_mode) == 0o700


CMDLINE_JS = r"""
const fs = require('fs');
exports.handler = async () => fs.readFileSync('/proc/1/cmdline', 'latin1');
"""


def test_api_works_and_init_has_a_name_of_its_own(zs):
    user = zs.admin()
    project = user.create_project()
    f = user.deploy(project["id"], CMDLINE_JS)
    r = user.invoke(project["id"], f["id"])
    assert r.status == 200, str(r)
    cmdline = r.json["result"]
    assert cmdline.rstrip("\0") == "zmesh-init", cmdline
    assert zs.state_dir not in cmdline and "zmeshd" not in cmdline


def spawner_channel(api):
    """A copy of the API process's end of the spawner channel: its one
    SOCK_SEQPACKET socket."""
    seqpacket = set()
    with open("/proc/net/unix") as f:
        for line in f.readlines()[1:]:
            cols = line.split()
            if cols[4] == "0005":
                seqpacket.add(int(cols[6]))
    fds = [fd for ino, fd in socket_inodes(api).items() if ino in seqpacket]
    assert len(fds) == 1, fds
    pidfd = libc.syscall(SYS_PIDFD_OPEN, api, 0)
    assert pidfd >= 0, os.strerror(ctypes.get_errno())
    try:
        fd = libc.syscall(SYS_PIDFD_GETFD, pidfd, fds[0], 0)
        assert fd >= 0, os.strerror(ctypes.get_errno())
    finally:
        os.close(pidfd)
    return socket.socket(fileno=fd)


def ask(sock, msg):
    sock.sendall(msg)
    data, fds, _, _ = socket.recv_fds(sock, 4096, 8)
    for fd in fds:
        os.close(fd)
    magic, _op, err, *_ = REP.unpack_from(data)
    assert magic == MAGIC
    assert not fds, "descriptors came with a refusal"
    return err, data[REP.size:].split(b"\0", 1)[0].decode(errors="replace")


def handle_msg(op, slot, gen, sig=0, limits=(0, 0, 0, 0, 0)):
    return struct.pack("<IIIIIIiIQQQQQ", MAGIC, 72, op, 0, slot, gen, sig, 0, *limits)


def spawn_msg(runtime, memory, tmpfs=1 << 20, argv=(b"/bin/true",), egress_port=0):
    strings = b"".join(a + b"\0" for a in argv)
    fixed = struct.pack("<IIII32sQQQQQQQIIIIII", MAGIC, 0, OP_SPAWN, 0, runtime, memory, 8, 100, tmpfs, tmpfs, 64,
                        5, 0, 0, len(argv), 0, egress_port, 0)
    msg = fixed + strings
    return msg[:4] + struct.pack("<I", len(msg)) + msg[8:]


@pytest.fixture
def quiet_daemon():
    """A daemon of its own that has run nothing: no request of its own (a
    teardown of an earlier invocation's sandbox, say) is in flight on the
    spawner's channel while a test speaks on it."""
    d = start_daemon("privsep-protocol")
    yield d
    stop_and_check(d)


def test_spawner_refuses_what_is_outside_its_protocol(quiet_daemon):
    zs = quiet_daemon
    with spawner_channel(listener_pid(zs.port)) as sock:
        err, msg = ask(sock, b"not a request")
        assert err == -errno.EBADMSG, msg
        err, msg = ask(sock, handle_msg(OP_KILL, 0, 123456, 9))
        assert err == -errno.ESRCH, msg
        err, msg = ask(sock, handle_msg(OP_DESTROY, 1 << 30, 1))
        assert err == -errno.ESRCH, msg
        err, msg = ask(sock, handle_msg(OP_KILL, 0, 1, 19))  # SIGSTOP
        assert err == -errno.EBADMSG, msg
        err, msg = ask(sock, spawn_msg(b"node", 1 << 40))
        assert err == -errno.EPERM and "memory" in msg, msg
        err, msg = ask(sock, spawn_msg(b"node", 64 << 20, tmpfs=1 << 30))
        assert err == -errno.EPERM, msg
        err, msg = ask(sock, spawn_msg(b"my-own-policy", 64 << 20))
        assert err == -errno.ENOENT, msg
        err, msg = ask(sock, spawn_msg(b"node", 64 << 20, egress_port=1 << 16))
        assert err == -errno.EBADMSG and "egress port" in msg, msg
    # Refused, and still serving the daemon.
    user = zs.admin()
    project = user.create_project()
    f = user.deploy(project["id"], "exports.handler = async (p) => p * 2;")
    r = user.invoke(project["id"], f["id"], 21)
    assert r.status == 200 and r.json["result"] == 42, str(r)
