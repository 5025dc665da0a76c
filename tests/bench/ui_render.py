"""Web UI render times on a large fleet: 10,000 targets and 1,000,000 executions.

    python -m tests.bench.ui_render [--backend sqlite|postgresql|both]
        [--targets 10000] [--executions 1000000] [--repeat 5]

Seeds a fresh database (scripts, groups and policies through the real CLI and API;
targets, agent status and history by bulk insert, since a million executions through
the Agent API would take longer than the measurement), starts a real
`aami-server serve`, logs in through the login form, then fetches every page
`--repeat` times and prints the median and worst wall time per page, as seen by
an HTTP client on loopback (server render + transfer). The target is < 300 ms.
"""

from __future__ import annotations

import argparse
import io
import random
import sqlite3
import statistics
import tempfile
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

from tests.harness import ServerProcess, run_cli
from tests.web.helpers import UiClient, publish_script

GROUPS = 20
POLICIES_PER_GROUP = 1
HISTORY_DAYS = 30
FAILURE_RATE = 0.08
TARGET_MS = 300.0


@dataclass(frozen=True)
class Seed:
    targets: int
    executions: int


@contextmanager
def database(backend: str, directory: Path) -> Iterator[str]:
    if backend == "sqlite":
        yield f"sqlite:///{directory / 'bench.db'}"
        return
    from tests.conftest import PG_ADMIN_DSN, _create_database, _drop_database

    name = _create_database()
    try:
        yield f"{PG_ADMIN_DSN.rsplit('/', 1)[0]}/{name}"
    finally:
        _drop_database(name)


def _rows(seed: Seed, policy_ids: list[int], group_ids: list[int], script: tuple[str, str]
          ) -> dict[str, list[tuple]]:
    """Every bulk row, generated once (deterministic: seeded RNG)."""
    rng = random.Random(42)
    now = datetime.now(UTC).replace(tzinfo=None)
    created = now - timedelta(days=HISTORY_DAYS + 1)
    targets, members, status, executions, events = [], [], [], [], []
    for t in range(1, seed.targets + 1):
        targets.append((t, f"node-{t:05d}.cluster.local", f'{{"rack":"r{t % 50}"}}', created,
                        created))
        members.append((t, group_ids[t % len(group_ids)]))
        roll = rng.random()
        if roll < 0.97:  # 3 % never reported; of the rest most are online
            age = rng.choice([5, 20, 45, 200, 900, 4000]) if roll > 0.85 else rng.randint(1, 50)
            status.append((t, "0.1.0", now - timedelta(seconds=age), now, 86400 * 12, 400, 380,
                           20, 30, '{"os":"Debian 12","cpus":64,"gpus":8}'))
    per_target = max(1, seed.executions // seed.targets)
    span = HISTORY_DAYS * 86400
    for t in range(1, seed.targets + 1):
        policy = policy_ids[t % len(policy_ids)]
        for k in range(per_target):
            started = now - timedelta(seconds=span * (k + rng.random()) / per_target)
            ok = rng.random() > FAILURE_RATE
            executions.append((
                str(uuid.UUID(int=rng.getrandbits(128), version=4)), t, policy, script[0],
                script[1], "ab" * 32, started, started + timedelta(seconds=2), 2000,
                0 if ok else 2, ok, "usage 71%\n" if ok else "", "" if ok else "disk full\n",
                None if ok else "exit code 2", "schedule", None, started))
    for i in range(2000):
        events.append((str(uuid.uuid4()), rng.randint(1, seed.targets), None, "rogue", "9.9.9",
                       "cd" * 32, "bad_signature", "signature does not verify",
                       now - timedelta(minutes=i * 7), now))
    return {"target": targets, "target_group": members, "agent_status": status,
            "script_executions": executions, "security_event": events}


COLUMNS = {
    "target": ("id", "hostname", "labels", "created_at", "updated_at"),
    "target_group": ("target_id", "group_id"),
    "agent_status": ("target_id", "agent_version", "last_heartbeat", "last_poll",
                     "uptime_seconds", "scripts_total", "scripts_success", "scripts_failed",
                     "heartbeat_interval_seconds", "system_info"),
    "script_executions": ("id", "target_id", "script_policy_id", "script_name",
                          "script_version", "script_hash", "started_at", "finished_at",
                          "duration_ms", "exit_code", "success", "stdout", "stderr",
                          "error_message", "trigger", "force_token", "received_at"),
    "security_event": ("id", "target_id", "policy_id", "script_name", "script_version",
                       "script_hash", "reason", "message", "occurred_at", "received_at"),
}


def insert_sqlite(path: str, rows: dict[str, list[tuple]]) -> None:
    conn = sqlite3.connect(path, timeout=60)
    conn.execute("PRAGMA synchronous=OFF")
    with conn:
        for table, data in rows.items():
            cols = COLUMNS[table]
            conn.executemany(
                f'INSERT INTO "{table}" ({", ".join(cols)}) '
                f'VALUES ({", ".join("?" * len(cols))})', data)
    conn.execute("ANALYZE")
    conn.close()


def _copy_text(value: object) -> str:
    if value is None:
        return "\\N"
    if isinstance(value, bool):
        return "t" if value else "f"
    text = str(value)
    return text.replace("\\", "\\\\").replace("\t", "\\t").replace("\n", "\\n")


def insert_postgres(url: str, rows: dict[str, list[tuple]]) -> None:
    import psycopg2

    conn = psycopg2.connect(url)
    with conn, conn.cursor() as cur:
        for table, data in rows.items():
            buffer = io.StringIO()
            for row in data:
                buffer.write("\t".join(_copy_text(v) for v in row) + "\n")
            buffer.seek(0)
            cur.copy_expert(f'COPY "{table}" ({", ".join(COLUMNS[table])}) FROM STDIN', buffer)
        cur.execute("SELECT setval(pg_get_serial_sequence('target', 'id'), "
                    "(SELECT MAX(id) FROM target))")
    conn.autocommit = True
    with conn.cursor() as cur:
        cur.execute("ANALYZE")
    conn.close()


def prepare(server: ServerProcess, directory: Path) -> tuple[list[int], list[int]]:
    publish_script(server, directory)
    group_ids, policy_ids = [], []
    for g in range(GROUPS):
        reply = server.api("POST", "/api/v1/groups", json_body={"name": f"rack-{g:02d}",
                                                                "priority": g})
        group_ids.append(reply.json["id"])
        policy = server.api("POST", "/api/v1/policies", json_body={
            "name": f"disk-usage-rack-{g:02d}", "script": "disk-usage", "scope": "group",
            "group": f"rack-{g:02d}", "params": {"threshold_percent": 80 + g % 10},
            "schedule": {"mode": "interval", "interval": "60s"}})
        assert policy.status == 201, policy.body
        policy_ids.append(policy.json["id"])
    return group_ids, policy_ids


def pages(seed: Seed, group_id: int, policy_id: int, client: UiClient) -> list[str]:
    some = seed.targets // 2
    older = client.get(f"/ui/targets/{some}").text
    cursor_at = older.find("cursor=")
    cursor = older[cursor_at:older.find('"', cursor_at)].replace("&amp;", "&") \
        if cursor_at > 0 else ""
    return [
        "/ui/", "/ui/targets", "/ui/targets?offset=5000", "/ui/targets?status=online",
        "/ui/targets?status=offline", "/ui/targets?status=never",
        "/ui/targets?hostname=node-0421", "/ui/targets?group=rack-03&status=stale",
        f"/ui/targets/{some}", f"/ui/targets/{some}?success=false",
        f"/ui/targets/{some}?{cursor}", "/ui/executions", "/ui/executions?success=false",
        "/ui/executions?script=disk-usage&since=2000-01-01T00:00", "/ui/scripts",
        "/ui/scripts/disk-usage", "/ui/policies", f"/ui/policies/{policy_id}",
        "/ui/policies/new", f"/ui/policies/{policy_id}/edit", "/ui/groups",
        f"/ui/groups/{group_id}", "/ui/keys", "/ui/bootstrap-tokens",
    ]


def measure(client: UiClient, path: str, repeat: int) -> tuple[float, float]:
    client.get(path)  # warm caches (template compile, SQLite page cache)
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        page = client.get(path)
        times.append((time.perf_counter() - start) * 1000)
        assert page.status == 200, (path, page.status, page.text[:300])
    return statistics.median(times), max(times)


@contextmanager
def workdir(keep: Path | None) -> Iterator[str]:
    if keep is not None:
        keep.mkdir(parents=True, exist_ok=True)
        yield str(keep)
        return
    with tempfile.TemporaryDirectory() as tmp:
        yield tmp


def run(backend: str, seed: Seed, repeat: int, keep: Path | None = None) -> bool:
    with workdir(keep) as tmp, database(backend, Path(tmp)) as url:
        directory = Path(tmp)
        run_cli("aami-server", "migrate", "--database", url)
        with ServerProcess.start(url, directory) as server:
            group_ids, policy_ids = prepare(server, directory)
            started = time.perf_counter()
            rows = _rows(seed, policy_ids, group_ids, ("disk-usage", "1.0.0"))
            if backend == "sqlite":
                insert_sqlite(url[len("sqlite:///"):], rows)
            else:
                insert_postgres(url, rows)
            print(f"[{backend}] seeded {seed.targets} targets, "
                  f"{len(rows['script_executions'])} executions in "
                  f"{time.perf_counter() - started:.1f}s", flush=True)
            client = UiClient(server.url)
            client.login(server.token("admin"))
            worst_ok = True
            print(f"{'page':60} {'median ms':>10} {'max ms':>8}")
            for path in pages(seed, group_ids[3], policy_ids[3], client):
                median, worst = measure(client, path, repeat)
                worst_ok &= median < TARGET_MS
                flag = "" if median < TARGET_MS else "  <-- over target"
                print(f"{path[:60]:60} {median:10.1f} {worst:8.1f}{flag}", flush=True)
            return worst_ok


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backend", choices=["sqlite", "postgresql", "both"], default="both")
    parser.add_argument("--targets", type=int, default=10_000)
    parser.add_argument("--executions", type=int, default=1_000_000)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--keep", type=Path, default=None,
                        help="seed the SQLite database in this directory and keep it")
    args = parser.parse_args()
    seed = Seed(args.targets, args.executions)
    backends = ["sqlite", "postgresql"] if args.backend == "both" else [args.backend]
    results = {b: run(b, seed, args.repeat, args.keep if b == "sqlite" else None)
               for b in backends}
    for backend, ok in results.items():
        print(f"[{backend}] every page under {TARGET_MS:.0f} ms (median): {ok}")
    raise SystemExit(0 if all(results.values()) else 1)


if __name__ == "__main__":
    main()
