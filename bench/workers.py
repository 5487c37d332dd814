#!/usr/bin/env python3
"""Scheduler benchmark (issue 7): due steps processed per second by 1, 2 and 4 concurrent
`nurture tick` processes on SQLite and on PostgreSQL, beside a plain SQL batch-claim loop on
the same database doing the least any scheduler must do per step (claim 500 due rows, write
a step run for each, move each on): the raw limit.

N leads are imported with an event, one tick enrolls them (their first step waits a day),
then the workers run `tick --now <two days later>` together until every step has run. The
script checks that every enrollment ran its step exactly once.

Usage: bench/workers.py [--binary target/release/nurture] [--contacts 20000]
                        [--backends sqlite,postgres] [--workers 1,2,4]
PostgreSQL: a throwaway cluster is started (initdb/pg_ctl from /usr/lib/postgresql/*/bin).
"""
import argparse, datetime, glob, os, shutil, socket, sqlite3, subprocess, sys, tempfile, time

CAMPAIGN = """name: Workers
from: "Bench <bench@example.com>"
trigger: { event: lead.captured }
steps:
  - id: mark
    after: 1d
    tag: [marked]
"""
T0 = datetime.datetime(2026, 11, 2, 10, 0, tzinfo=datetime.timezone.utc)


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


class Postgres:
    """A throwaway cluster, as scripts/test starts one."""

    def __init__(self):
        bins = sorted(glob.glob("/usr/lib/postgresql/*/bin"))
        if not bins:
            sys.exit("PostgreSQL server binaries not found (apt-get install postgresql)")
        self.bin = bins[-1]
        self.tmp = tempfile.mkdtemp(prefix="nurture-bench-pg-", dir="/tmp")
        self.as_pg = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []
        if self.as_pg:
            shutil.chown(self.tmp, "postgres")
        self.port = free_port()
        data = f"{self.tmp}/data"
        self._pg(f"{self.bin}/initdb", "-D", data, "-U", "postgres", "-A", "trust", "--no-sync")
        opts = f"-p {self.port} -k {self.tmp} -c listen_addresses=127.0.0.1 -c fsync=off -c synchronous_commit=off -c max_connections=200"
        self._pg(f"{self.bin}/pg_ctl", "-D", data, "-l", f"{self.tmp}/log", "-w", "-o", opts, "start")
        self.data = data

    def _pg(self, *args):
        subprocess.run([*self.as_pg, *args], cwd=self.tmp, check=True, capture_output=True)

    def psql(self, db, sql):
        return subprocess.run(
            ["psql", "-h", "127.0.0.1", "-p", str(self.port), "-U", "postgres", "-d", db, "-At", "-c", sql],
            check=True, capture_output=True, text=True,
        ).stdout.strip()

    def fresh(self, name):
        self.psql("postgres", f"DROP DATABASE IF EXISTS {name}")
        self.psql("postgres", f"CREATE DATABASE {name}")
        return f"postgres://postgres@127.0.0.1:{self.port}/{name}"

    def stop(self):
        subprocess.run([*self.as_pg, f"{self.bin}/pg_ctl", "-D", self.data, "-m", "immediate", "stop"],
                       cwd=self.tmp, capture_output=True)
        shutil.rmtree(self.tmp, ignore_errors=True)


def env(url):
    e = {k: v for k, v in os.environ.items() if not k.startswith("NURTURE_")}
    e["NURTURE_DATABASE_URL"] = url
    return e


def prepare(binary, root, url, n):
    os.makedirs(f"{root}/campaigns", exist_ok=True)
    os.makedirs(f"{root}/templates", exist_ok=True)
    open(f"{root}/campaigns/workers.yaml", "w").write(CAMPAIGN)
    with open(f"{root}/leads.csv", "w") as f:
        f.write("email\n")
        for i in range(n):
            f.write(f"w{i}@example.com\n")
    e = env(url)
    at = T0.isoformat()
    subprocess.run([binary, "contacts", "import", "leads.csv", "--event", "lead.captured", "--at", at],
                   cwd=root, env=e, check=True, capture_output=True)
    subprocess.run([binary, "tick", "--now", at], cwd=root, env=e, check=True, capture_output=True)


def run_workers(binary, root, url, workers):
    e = env(url)
    later = (T0 + datetime.timedelta(days=2)).isoformat()
    t = time.perf_counter()
    procs = [subprocess.Popen([binary, "tick", "--now", later], cwd=root, env=e,
                              stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
             for _ in range(workers)]
    for p in procs:
        _, err = p.communicate()
        if p.returncode != 0:
            sys.exit(f"a worker failed: {err}")
    return time.perf_counter() - t


def check_sqlite(db, n):
    c = sqlite3.connect(db)
    runs = c.execute("SELECT COUNT(*), COUNT(DISTINCT enrollment_id) FROM step_runs").fetchone()
    done = c.execute("SELECT COUNT(*) FROM enrollments WHERE state = 'completed'").fetchone()[0]
    c.close()
    return runs, done


def check_pg(pg, name):
    runs = tuple(int(x) for x in pg.psql(name, "SELECT COUNT(*), COUNT(DISTINCT enrollment_id) FROM step_runs").split("|"))
    done = int(pg.psql(name, "SELECT COUNT(*) FROM enrollments WHERE state = 'completed'"))
    return runs, done


RAW_SQLITE = """
BEGIN IMMEDIATE;
CREATE TEMP TABLE IF NOT EXISTS claimed (id INTEGER PRIMARY KEY, seq INTEGER);
DELETE FROM claimed;
INSERT INTO claimed SELECT id, seq FROM enrollments WHERE state = 'active' AND next_run_at <= {now} ORDER BY next_run_at LIMIT 500;
INSERT INTO step_runs (enrollment_id, seq, step_id, outcome, at) SELECT id, seq + 1, 'mark', 'tagged', {now} FROM claimed;
UPDATE enrollments SET seq = seq + 1, state = 'completed', ended_at = {now}, next_run_at = NULL WHERE id IN (SELECT id FROM claimed);
COMMIT;
"""

RAW_PG = """
BEGIN;
WITH claimed AS (
  SELECT id, seq FROM enrollments WHERE state = 'active' AND next_run_at <= {now}
  ORDER BY next_run_at LIMIT 500 FOR UPDATE SKIP LOCKED
), runs AS (
  INSERT INTO step_runs (enrollment_id, seq, step_id, outcome, at)
  SELECT id, seq + 1, 'mark', 'tagged', {now} FROM claimed RETURNING enrollment_id
)
UPDATE enrollments SET seq = seq + 1, state = 'completed', ended_at = {now}, next_run_at = NULL
WHERE id IN (SELECT enrollment_id FROM runs);
COMMIT;
"""


def raw_loop_sqlite(db, n):
    now = int((T0 + datetime.timedelta(days=2)).timestamp() * 1000)
    c = sqlite3.connect(db, isolation_level=None)
    t = time.perf_counter()
    while True:
        c.executescript(RAW_SQLITE.format(now=now))
        left = c.execute("SELECT COUNT(*) FROM enrollments WHERE state = 'active'").fetchone()[0]
        if left == 0:
            break
    dt = time.perf_counter() - t
    c.close()
    return dt


def raw_loop_pg(pg, name):
    now = int((T0 + datetime.timedelta(days=2)).timestamp() * 1000)
    # One psql session running the claim loop in a DO block would hide the round trips a
    # scheduler pays; one statement per round trip through a persistent psql is closer.
    p = subprocess.Popen(["psql", "-h", "127.0.0.1", "-p", str(pg.port), "-U", "postgres", "-d", name, "-At", "-q"],
                         stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    t = time.perf_counter()
    while True:
        p.stdin.write(RAW_PG.format(now=now))
        p.stdin.write("SELECT COUNT(*) FROM enrollments WHERE state = 'active';\n")
        p.stdin.flush()
        left = int(p.stdout.readline().strip() or "0")
        if left == 0:
            break
    dt = time.perf_counter() - t
    p.stdin.close()
    p.wait()
    return dt


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--binary", default="target/release/nurture")
    ap.add_argument("--contacts", type=int, default=20_000)
    ap.add_argument("--backends", default="sqlite,postgres")
    ap.add_argument("--workers", default="1,2,4")
    a = ap.parse_args()
    binary = os.path.abspath(a.binary)
    if not os.path.exists(binary):
        sys.exit(f"{binary} not found; run cargo build --release first")
    n = a.contacts
    workers = [int(w) for w in a.workers.split(",")]
    pg = Postgres() if "postgres" in a.backends else None
    failed = False
    try:
        for backend in a.backends.split(","):
            rates = []
            for w in workers + ["raw"]:
                root = tempfile.mkdtemp(prefix="nurture-bench-workers-")
                try:
                    if backend == "sqlite":
                        url = f"sqlite://{root}/nurture.db"
                    else:
                        name = f"bench_{w}"
                        url = pg.fresh(name)
                    prepare(binary, root, url, n)
                    if w == "raw":
                        dt = raw_loop_sqlite(f"{root}/nurture.db", n) if backend == "sqlite" else raw_loop_pg(pg, name)
                    else:
                        dt = run_workers(binary, root, url, w)
                    (runs, distinct), done = check_sqlite(f"{root}/nurture.db", n) if backend == "sqlite" else check_pg(pg, name)
                    ok = runs == distinct == done == n
                    failed |= not ok
                    label = "raw SQL claim loop" if w == "raw" else f"{w} worker{'s' if w > 1 else ''}"
                    print(f"{backend:8} {label:19} {n} steps in {dt:6.2f}s = {n / dt:9,.0f} steps/s"
                          f"  ({runs} step runs, {done} completed{'' if ok else ' — MISMATCH'})", flush=True)
                    rates.append((w, n / dt))
                finally:
                    shutil.rmtree(root, ignore_errors=True)
            raw = dict(rates)["raw"]
            ratios = ", ".join(f"{w} worker{'s' if w > 1 else ''} {r / raw:.2f}" for w, r in rates if w != "raw")
            print(f"{backend:8} nurture / raw loop: {ratios} (target on postgres: 3 workers >= 0.8)")
    finally:
        if pg:
            pg.stop()
    if failed:
        sys.exit("a step ran twice or not at all")


if __name__ == "__main__":
    main()
