#!/usr/bin/env python3
"""gen_errorlog.py N [SEED] writes N lines of a realistic nginx error.log:
basic-auth failures (password mismatch, unknown user) from 5,000 client
addresses, IPv4 and IPv6 (documentation ranges: text only, no traffic),
mixed with the lines a busy server also logs (missing files, upstream
trouble, no credentials given, notices). About a third are failures the
nginx-http-auth filter (normal mode) matches."""
import random
import sys

n = int(sys.argv[1])
rng = random.Random(int(sys.argv[2]) if len(sys.argv) > 2 else 1)

addrs = []
for i in range(5000):
    if i % 5 == 4:
        addrs.append("2001:db8:%x:%x::%x" % (rng.randrange(65536), rng.randrange(65536), rng.randrange(1, 65536)))
    else:
        addrs.append("%s.%d" % (rng.choice(["203.0.113", "198.51.100", "192.0.2"]), rng.randrange(1, 255)))
users = ["admin", "root", "test", "bob", "alice", "user", "guest", "oracle", "web", "x\"y"]
paths = ["/", "/admin/", "/private/report.pdf", "/wp-login.php", "/api/v1/items?id=7", "/.env", "/status"]
hosts = ["example.com", "www.example.com", "203.0.113.1"]
out = sys.stdout
conn = 1000
t = 1765000000
for i in range(n):
    t += rng.randrange(0, 2)
    conn += 1
    pid = 1200 + rng.randrange(4)
    a = rng.choice(addrs)
    h = rng.choice(hosts)
    req = '"%s %s HTTP/1.1"' % (rng.choice(["GET", "POST"]), rng.choice(paths))
    stamp = "%04d/%02d/%02d %02d:%02d:%02d" % (2025, 12, 6 + (t // 86400) % 20, (t // 3600) % 24, (t // 60) % 60, t % 60)
    r = rng.random()
    if r < 0.20:
        line = '%s [error] %d#%d: *%d user "%s": password mismatch, client: %s, server: %s, request: %s, host: "%s"' % (
            stamp, pid, pid, conn, rng.choice(users), a, h, req, h)
    elif r < 0.33:
        line = '%s [error] %d#%d: *%d user "%s" was not found in "/etc/nginx/.htpasswd", client: %s, server: %s, request: %s, host: "%s"' % (
            stamp, pid, pid, conn, rng.choice(users), a, h, req, h)
        if rng.random() < 0.3:
            line += ', referrer: "https://%s/login"' % h
    elif r < 0.55:
        line = '%s [error] %d#%d: *%d open() "/var/www/html%s" failed (2: No such file or directory), client: %s, server: %s, request: %s, host: "%s"' % (
            stamp, pid, pid, conn, rng.choice(["/favicon.ico", "/robots.txt", "/.git/config", "/old.html"]), a, h, req, h)
    elif r < 0.70:
        line = '%s [error] %d#%d: *%d no user/password was provided for basic authentication, client: %s, server: %s, request: %s, host: "%s"' % (
            stamp, pid, pid, conn, a, h, req, h)
    elif r < 0.85:
        line = '%s [error] %d#%d: *%d upstream timed out (110: Connection timed out) while reading response header from upstream, client: %s, server: %s, request: %s, upstream: "http://127.0.0.1:8080/", host: "%s"' % (
            stamp, pid, pid, conn, a, h, req, h)
    elif r < 0.95:
        line = '%s [warn] %d#%d: *%d an upstream response is buffered to a temporary file /var/lib/nginx/proxy/1/00/%010d while reading upstream, client: %s, server: %s, request: %s, host: "%s"' % (
            stamp, pid, pid, conn, conn, a, h, req, h)
    else:
        line = "%s [notice] %d#%d: signal process started" % (stamp, pid, pid)
    out.write(line + "\n")
