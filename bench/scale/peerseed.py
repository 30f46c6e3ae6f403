#!/usr/bin/python3
"""Seeds fail2ban's and sshguard's persisted bans for bench/scale/peers.sh.

Writes the same N host addresses `bench/seedstore -n N` stores for moat
(the first 65,000 in 10.210.0.0/16, the rest under fd00:210:beef::/48, see
bench/seedstore/main.go) as
  --f2b DB:       a fail2ban sqlite database (schema made by fail2ban's own
                  Fail2BanDb) with N current bans of jail --jail, in the
                  tables fail2ban 1.0 writes (bans, and bips, which its
                  restore at start reads), each banned a minute ago for a
                  week;
  --sshguard F:   an sshguard blacklist (the format sshguard 2.4 writes:
                  "UNIXTIME|SERVICE|4 or 6|ADDRESS", service 100 = sshd).
--last prints the last address.
"""
import argparse
import ipaddress
import json
import sqlite3
import time


def addr(i):
    if i < 65000:
        return "10.210.%d.%d" % (i >> 8 & 255, i & 255)
    b = bytearray(16)
    b[0:6] = bytes([0xFD, 0x00, 0x02, 0x10, 0xBE, 0xEF])
    b[12], b[14], b[15] = i >> 16 & 255, i >> 8 & 255, i & 255
    return str(ipaddress.IPv6Address(bytes(b)))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("-n", type=int, required=True)
    ap.add_argument("--f2b")
    ap.add_argument("--jail", default="sshd")
    ap.add_argument("--sshguard")
    ap.add_argument("--last", action="store_true")
    a = ap.parse_args()
    now = int(time.time())
    if a.f2b:
        # fail2ban makes its schema (and records its version) itself.
        from fail2ban.server.database import Fail2BanDb

        Fail2BanDb(a.f2b)
        db = sqlite3.connect(a.f2b)
        data = json.dumps({"failures": 5, "matches": []})
        rows = [(a.jail, addr(i), now - 60, 7 * 86400, 1, data) for i in range(a.n)]
        with db:
            db.execute("INSERT OR IGNORE INTO jails(name, enabled) VALUES(?, 1)", (a.jail,))
            db.executemany("INSERT INTO bans(jail, ip, timeofban, bantime, bancount, data) VALUES(?, ?, ?, ?, ?, ?)", rows)
            db.executemany(
                "INSERT OR REPLACE INTO bips(jail, ip, timeofban, bantime, bancount, data) VALUES(?, ?, ?, ?, ?, ?)", rows
            )
        db.close()
    if a.sshguard:
        with open(a.sshguard, "w") as f:
            for i in range(a.n):
                s = addr(i)
                f.write("%d|100|%d|%s\n" % (now - 60, 6 if ":" in s else 4, s))
    if a.last:
        print(addr(a.n - 1))


if __name__ == "__main__":
    main()
