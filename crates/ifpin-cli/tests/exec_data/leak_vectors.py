#!/usr/bin/python3
"""Tries one way of getting a packet out of an interface it should not use.

Used by ifpin's `exec` tests, run with and without `ifpin exec`: each override vector of
docs/kernel.md (the ones that leak) is tried by a program that does not
know it is confined. The routing table sends the destination out of the front port, so a
vector that works leaves a frame there.

Usage: leak_vectors.py VECTOR FRONT_IF DST4 DST6 FRONT_LL HOST_FRONT_LL HOST_CTL_V4 PORT

Prints one JSON object: {"vector", "steps": [{"call", "result"}], "sends_refused",
"setsockopt_refused"}; "result" is "ok" or the errno name. Always exits 0 (a refusal is
an outcome, not a failure) unless the arguments are wrong.
"""

import errno
import os
import json
import socket
import struct
import sys
import time

IP_PKTINFO = 8
IPV6_PKTINFO = 50
SO_BINDTOIFINDEX = 62
ETH_P_EXPERIMENTAL = 0x88B5  # IEEE local experimental ethertype: unmistakable on the wire
SEND_COUNT = 3
TIMEOUT = 0.6
LINGER = 0.3

steps = []


def step(call, fn):
    """Runs fn, records "ok" or the errno name; returns fn's value or None."""
    try:
        value = fn()
        steps.append({"call": call, "result": "ok"})
        return value
    except OSError as e:
        name = errno.errorcode.get(e.errno, str(e.errno)) if e.errno else type(e).__name__
        steps.append({"call": call, "result": name})
        return None


def pktinfo4(ifindex):
    # struct in_pktinfo { int ipi_ifindex; struct in_addr ipi_spec_dst, ipi_addr; }
    return (socket.IPPROTO_IP, IP_PKTINFO, struct.pack("=i4s4s", ifindex, bytes(4), bytes(4)))


def pktinfo6(ifindex):
    # struct in6_pktinfo { struct in6_addr ipi6_addr; int ipi6_ifindex; }
    return (socket.IPPROTO_IPV6, IPV6_PKTINFO, struct.pack("=16si", bytes(16), ifindex))


def tcp_connect(sock, addr):
    sock.settimeout(TIMEOUT)
    try:
        sock.connect(addr)
        # Read the responder's answer before closing: data arriving after close() makes the
        # host kernel answer with RSTs of its own, routed by the table (out of the front
        # port), which are not this program's packets.
        try:
            sock.recv(64)
        except OSError:
            pass
        # Close with a RST (SO_LINGER 0): no TIME_WAIT, whose late ACKs the host kernel would
        # send on its own, routed by the table, after this program is gone.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        return "connected"
    finally:
        sock.close()


def main():
    if len(sys.argv) != 9:
        sys.exit(__doc__)
    vector, front_if, dst4, dst6, front_ll, host_front_ll, host_ctl_v4, port = sys.argv[1:]
    port = int(port)
    front = socket.if_nametoindex(front_if)
    payload = b"ifpin-leak-test " + vector.encode()

    if vector == "tcp4-route":
        # Honest code: a plain connect, routed out of the front port by the table.
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        step("connect", lambda: tcp_connect(s, (dst4, port)))
    elif vector == "tcp4-bind-address":
        # The bind() fallacy: bound to the control interface's address, still routed by dst.
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        step("bind", lambda: s.bind((host_ctl_v4, 0)))
        step("connect", lambda: tcp_connect(s, (dst4, port)))
    elif vector == "udp4-pktinfo":
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        for _ in range(SEND_COUNT):
            step("sendmsg", lambda: s.sendmsg([payload], [pktinfo4(front)], 0, (dst4, port)))
    elif vector == "ping4-pktinfo":
        s = step("socket", lambda: socket.socket(socket.AF_INET, socket.SOCK_DGRAM, socket.IPPROTO_ICMP))
        if s is not None:
            echo = struct.pack("!BBHHH", 8, 0, 0, 0, 1) + payload
            for _ in range(SEND_COUNT):
                step("sendmsg", lambda: s.sendmsg([echo], [pktinfo4(front)], 0, (dst4, 0)))
    elif vector == "udp6-v4mapped-pktinfo":
        s = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)
        mapped = "::ffff:" + dst4
        for _ in range(SEND_COUNT):
            step("sendmsg", lambda: s.sendmsg([payload], [pktinfo4(front)], 0, (mapped, port)))
        for _ in range(SEND_COUNT):
            step("sendmsg", lambda: s.sendmsg([payload], [pktinfo6(front)], 0, (mapped, port)))
    elif vector == "udp6-scope-id":
        s = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)
        for _ in range(SEND_COUNT):
            step("sendto", lambda: s.sendto(payload, (front_ll, port, 0, front)))
    elif vector == "tcp6-linklocal-bind":
        # bind() to a link-local address of the front port silently rebinds the socket there.
        s = socket.socket(socket.AF_INET6, socket.SOCK_STREAM)
        step("bind", lambda: s.bind((host_front_ll, 0, 0, front)))
        step("connect", lambda: tcp_connect(s, (dst6, port)))
    elif vector == "rebind-root":
        # Root inside the cgroup may rebind a pinned socket (CAP_NET_RAW).
        u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        step("setsockopt", lambda: u.setsockopt(socket.SOL_SOCKET, socket.SO_BINDTODEVICE, front_if.encode()))
        for _ in range(SEND_COUNT):
            step("sendto", lambda: u.sendto(payload, (dst4, port)))
        t = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        step("setsockopt", lambda: t.setsockopt(socket.SOL_SOCKET, SO_BINDTOIFINDEX, front))
        step("connect", lambda: tcp_connect(t, (dst4, port)))
    elif vector == "raw4-pktinfo":
        s = step("socket", lambda: socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_UDP))
        if s is not None:
            udp = struct.pack("!HHHH", 40000, port, 8 + len(payload), 0) + payload
            for _ in range(SEND_COUNT):
                step("sendmsg", lambda: s.sendmsg([udp], [pktinfo4(front)], 0, (dst4, 0)))
    elif vector == "cgroup-escape":
        # Root inside moves itself out of its cgroup (a file write, no capability needed), then
        # sends as in udp4-pktinfo.
        def escape():
            with open("/proc/self/mountinfo") as f:
                for line in f:
                    before, after = line.split(" - ", 1)
                    if after.startswith("cgroup2 "):
                        with open(before.split()[4] + "/cgroup.procs", "w") as procs:
                            procs.write(str(os.getpid()))
                        return
            raise OSError(errno.ENOENT, "no cgroup2 mount")
        step("cgroup.procs", escape)
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        for _ in range(SEND_COUNT):
            step("sendmsg", lambda: s.sendmsg([payload], [pktinfo4(front)], 0, (dst4, port)))
    elif vector == "packet":
        s = step("socket", lambda: socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(ETH_P_EXPERIMENTAL)))
        if s is not None:
            step("bind", lambda: s.bind((front_if, ETH_P_EXPERIMENTAL)))
            frame = b"\xff" * 6 + b"\x02\x00\x00\x00\x00\x01" + struct.pack("!H", ETH_P_EXPERIMENTAL) + payload.ljust(46, b"\0")
            for _ in range(SEND_COUNT):
                step("send", lambda: s.send(frame))
    else:
        sys.exit("unknown vector " + vector)

    # Keep the sockets open while the peers' answers come back: an answer to a closed port
    # makes the host kernel send an ICMP port-unreachable of its own, routed by the table (out
    # of the front port), which is not this program's packet (docs/kernel.md, how the demo
    # counts: only the vector's own packets are its leak).
    time.sleep(LINGER)

    refused = lambda calls: sum(1 for s in steps if s["call"] in calls and s["result"] != "ok")
    print(json.dumps({
        "vector": vector,
        "steps": steps,
        "sends_refused": refused(("sendmsg", "sendto", "send")),
        "setsockopt_refused": refused(("setsockopt",)),
    }))


if __name__ == "__main__":
    main()
