"""The cron scheduler against real daemons and a real cluster: ticks of a
schedule become fire rows, queued jobs and invocation records (trigger
"schedule") with the documented event; overlap skip and conditions make a
skipped fire and no job; catch_up skip, latest and all after an outage; a
trigger enabled again does not back-fill; two daemons on one database fire
every tick once, and the survivor goes on alone.

Triggers are written with SQL (as the API stores them), so these tests do not
depend on the triggers API. Whether a queue worker has already run a job or
not, each tick's event is read from its job or from the result of the function,
which returns the event it was given.
"""

import json
import re
import secrets
import subprocess
import time
from datetime import datetime, timezone

import pytest

from conftest import Daemon, UUID_RE, stop_and_check

ECHO_JS = "exports.handler = async (event) => event;\n"
TIME_RE = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$")
MISFIRE_S = 10  # SCHED_MISFIRE_MS


def q(s):
    """A SQL string literal."""
    return "'" + s.replace("'", "''") + "'"


def create_trigger(d, project_id, function_id, config, conditions=None, enabled=True, age_s=0, db="zmesh"):
    """A cron trigger as the API stores it; created and last updated age_s
    seconds ago. Returns its id."""
    rows = d.sql("INSERT INTO triggers (project_id, function_id, event_type, config, conditions, enabled, "
                 "created_at, updated_at) VALUES (%s, %s, 'cron', %s::jsonb, %s::jsonb, %s, "
                 "now() - %d * interval '1 second', now() - %d * interval '1 second') RETURNING id"
                 % (q(project_id), q(function_id), q(json.dumps(config)), q(json.dumps(conditions or [])),
                    "true" if enabled else "false", age_s, age_s), db=db)
    assert len(rows) == 1 and UUID_RE.match(rows[0][0]), rows
    return rows[0][0]


def config(schedule, **kw):
    c = {"schedule": schedule, "timezone": "UTC", "payload": None, "catch_up": "skip", "overlap": "allow"}
    c.update(kw)
    return c


def disable(d, tid, db="zmesh"):
    d.sql("UPDATE triggers SET enabled = false WHERE id = %s" % q(tid), db=db)


def fires(d, tid, db="zmesh"):
    """[(scheduled epoch ms, invocation id or '', skipped or '')] by time."""
    rows = d.sql("SELECT floor(extract(epoch FROM scheduled_time) * 1000)::bigint, coalesce(invocation_id::text, ''), "
                 "coalesce(skipped, '') FROM cron_fires WHERE trigger_id = %s ORDER BY scheduled_time" % q(tid),
                 db=db)
    return [(int(r[0]), r[1], r[2]) for r in rows]


def wait_for(what, pred, timeout=20.0, step=0.1):
    deadline = time.monotonic() + timeout
    while True:
        value = pred()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError("timed out waiting for %s" % what)
        time.sleep(step)


def event_of(d, invocation_id, db="zmesh"):
    """The event a tick queued: from its job while it is queued or running,
    else from the function's result (it echoes its event)."""
    rows = d.sql("SELECT event::text FROM jobs WHERE first_invocation_id = %s" % q(invocation_id), db=db)
    if rows:
        return json.loads(rows[0][0])
    rows = d.sql("SELECT status, coalesce(result_excerpt, '') FROM invocations WHERE id = %s" % q(invocation_id),
                 db=db)
    assert rows and rows[0][0] == "success", "no job and no successful record for %s: %r" % (invocation_id, rows)
    return json.loads(rows[0][1])


def parse_time(s):
    assert TIME_RE.match(s), s
    return datetime.strptime(s, "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=timezone.utc).timestamp() * 1000


def metric(d, name):
    return d.metrics().get(name, 0.0)


@pytest.fixture
def echo(user, project):
    return user.deploy(project["id"], ECHO_JS)


def test_every_second_fires_once_per_tick(zd, project, echo):
    fired_before = metric(zd, "zmesh_cron_fired_total")
    tid = create_trigger(zd, project["id"], echo["id"], config("*/1 * * * * *", payload={"k": [1, "x"]}))
    try:
        wait_for("six fires", lambda: len(fires(zd, tid)) >= 6)
    finally:
        disable(zd, tid)
    at_disable = len(fires(zd, tid))
    time.sleep(1.5)
    rows = fires(zd, tid)
    # A claim in flight when the trigger was disabled may still land; then
    # nothing.
    assert len(rows) <= at_disable + 1, rows

    times = [r[0] for r in rows]
    assert all(t % 1000 == 0 for t in times), times
    # An idle node loses no tick: every second from the first to the last.
    assert times == list(range(times[0], times[-1] + 1000, 1000)), times
    assert all(r[1] and not r[2] for r in rows), rows

    invs = [r[1] for r in rows]
    recs = zd.sql("SELECT id, trigger, trigger_id, attempt, project_id, function_id FROM invocations "
                  "WHERE trigger_id = %s ORDER BY started_at" % q(tid))
    assert sorted(r[0] for r in recs) == sorted(invs), (recs, invs)
    for r in recs:
        assert r[1:] == ["schedule", tid, "1", project["id"], echo["id"]], r
    # One job per tick: those not yet run are in the queue, with the
    # function's version.
    jobs = zd.sql("SELECT first_invocation_id, trigger, version FROM jobs WHERE trigger_id = %s" % q(tid))
    assert {j[0] for j in jobs} <= set(invs), jobs
    assert all(j[1] == "schedule" and j[2] == str(echo["version"]) for j in jobs), jobs

    late = []
    for sched_ms, inv, _ in rows:
        ev = event_of(zd, inv)
        assert set(ev) == {"trigger", "trigger_id", "cron", "scheduled_time", "actual_time", "payload"}, ev
        assert ev["trigger"] == "schedule" and ev["trigger_id"] == tid and ev["cron"] == "*/1 * * * * *", ev
        assert ev["payload"] == {"k": [1, "x"]}, ev
        assert parse_time(ev["scheduled_time"]) == sched_ms, ev
        late.append(parse_time(ev["actual_time"]) - sched_ms)
    late.sort()
    assert late[0] >= 0, late
    # Prompt: well within a second, and the typical tick within the 250 ms
    # goal (the benchmark measures the p99).
    assert late[-1] < 1000, late
    assert late[len(late) // 2] < 250, late
    assert metric(zd, "zmesh_cron_fired_total") - fired_before == len(rows)


def first_tick_lateness(d, project, function):
    """How late the first tick of a new every-second trigger fires (ms)."""
    tid = create_trigger(d, project["id"], function["id"], config("*/1 * * * * *"))
    try:
        rows = wait_for("a first tick", lambda: fires(d, tid))
    finally:
        disable(d, tid)
    ev = event_of(d, rows[0][1])
    return parse_time(ev["actual_time"]) - parse_time(ev["scheduled_time"])


def listen_backends(d):
    return d.sql("SELECT pid FROM pg_stat_activity WHERE datname = 'zmesh' AND query = 'LISTEN zmesh_triggers'")


def test_changes_seen_at_once_and_listen_reconnects(zd, project, echo):
    """A new trigger is scheduled on its NOTIFY, not at the next poll
    (5 s): its first tick is on time. The LISTEN connection, killed, comes
    back and does so again."""
    assert len(listen_backends(zd)) == 1
    for _ in range(3):
        late = first_tick_lateness(zd, project, echo)
        assert 0 <= late < 500, late
    old = listen_backends(zd)
    assert zd.sql("SELECT pg_terminate_backend(%s)" % old[0][0]) == [["t"]]
    wait_for("the scheduler to notice", lambda: any(e.get("event") == "cron_listen_lost" for e in zd.log_events()))
    wait_for("a new LISTEN connection", lambda: (lambda b: len(b) == 1 and b != old)(listen_backends(zd)))
    for _ in range(3):
        late = first_tick_lateness(zd, project, echo)
        assert 0 <= late < 500, late


def test_overlap_skip(zd, project, echo):
    overlap_before = metric(zd, "zmesh_cron_overlap_skipped_total")
    # The trigger and a job of it still in the queue (due in an hour: no
    # worker takes it), committed together.
    rows = zd.sql(
        "WITH t AS (INSERT INTO triggers (project_id, function_id, event_type, config) VALUES (%s, %s, 'cron', %s) "
        "RETURNING id, project_id, function_id) "
        "INSERT INTO jobs (project_id, function_id, version, trigger, trigger_id, invocation_id, "
        "first_invocation_id, run_after) SELECT project_id, function_id, 1, 'schedule', id, gen_random_uuid(), "
        "gen_random_uuid(), now() + interval '1 hour' FROM t RETURNING trigger_id, id"
        % (q(project["id"]), q(echo["id"]), q(json.dumps(config("*/1 * * * * *", overlap="skip")))))
    tid, job = rows[0]
    try:
        wait_for("two overlapping ticks", lambda: len(fires(zd, tid)) >= 2)
        skipped = fires(zd, tid)
        assert all(r[1] == "" and r[2] == "overlap" for r in skipped), skipped
        assert zd.sql("SELECT count(*) FROM invocations WHERE trigger_id = %s" % q(tid)) == [["0"]]
        assert zd.sql("SELECT count(*) FROM jobs WHERE trigger_id = %s" % q(tid)) == [["1"]]
        assert metric(zd, "zmesh_cron_overlap_skipped_total") - overlap_before >= len(skipped)

        # The previous run is over: the next tick runs.
        zd.sql("DELETE FROM jobs WHERE id = %s" % q(job))
        ran = wait_for("a tick that runs", lambda: [r for r in fires(zd, tid) if r[1]])
        assert ran[0][2] == "" and ran[0][0] > skipped[-1][0], ran
    finally:
        disable(zd, tid)


def test_overlap_allow_does_not_skip(zd, project, echo):
    rows = zd.sql(
        "WITH t AS (INSERT INTO triggers (project_id, function_id, event_type, config) VALUES (%s, %s, 'cron', %s) "
        "RETURNING id, project_id, function_id) "
        "INSERT INTO jobs (project_id, function_id, version, trigger, trigger_id, invocation_id, "
        "first_invocation_id, run_after) SELECT project_id, function_id, 1, 'schedule', id, gen_random_uuid(), "
        "gen_random_uuid(), now() + interval '1 hour' FROM t RETURNING trigger_id"
        % (q(project["id"]), q(echo["id"]), q(json.dumps(config("*/1 * * * * *")))))
    tid = rows[0][0]
    try:
        wait_for("two ticks", lambda: len(fires(zd, tid)) >= 2)
    finally:
        disable(zd, tid)
    assert all(r[1] and not r[2] for r in fires(zd, tid)), fires(zd, tid)


def test_conditions_filter_ticks(zd, project, echo):
    filtered_before = metric(zd, "zmesh_events_filtered_total")
    no = create_trigger(zd, project["id"], echo["id"], config("*/1 * * * * *", payload={"kind": "no"}),
                        conditions=[{"field": "payload.kind", "op": "eq", "value": "yes"}])
    yes = create_trigger(zd, project["id"], echo["id"], config("*/1 * * * * *", payload={"kind": "yes"}),
                         conditions=[{"field": "payload.kind", "op": "eq", "value": "yes"},
                                     {"field": "trigger", "op": "eq", "value": "schedule"}])
    try:
        wait_for("ticks of both", lambda: len(fires(zd, no)) >= 2 and len(fires(zd, yes)) >= 2)
    finally:
        disable(zd, no)
        disable(zd, yes)
    rows = fires(zd, no)
    assert all(r[1] == "" and r[2] == "filtered" for r in rows), rows
    assert zd.sql("SELECT count(*) FROM invocations WHERE trigger_id = %s" % q(no)) == [["0"]]
    assert metric(zd, "zmesh_events_filtered_total") - filtered_before >= len(rows)
    assert all(r[1] and not r[2] for r in fires(zd, yes)), fires(zd, yes)


def test_malformed_trigger_is_ignored(zd, project, echo):
    """A row written by hand that the API would refuse: logged, no fire,
    and the scheduler goes on with the others."""
    bad = [
        create_trigger(zd, project["id"], echo["id"], {"schedule": "61 * * * * *"}),
        create_trigger(zd, project["id"], echo["id"], {"timezone": "UTC"}),
        create_trigger(zd, project["id"], echo["id"], {"schedule": "* * * * * *", "timezone": "Mars/Olympus"}),
        create_trigger(zd, project["id"], echo["id"], {"schedule": "* * * * * *", "catch_up": 3}),
        create_trigger(zd, project["id"], echo["id"], {"schedule": "* * * * * *"}, conditions=[{"op": "eq"}]),
    ]
    # Defaults filled for a row that lacks them.
    good = create_trigger(zd, project["id"], echo["id"], {"schedule": "* * * * * *"})
    try:
        wait_for("ticks of the good one", lambda: len(fires(zd, good)) >= 2)
        for tid in bad:
            assert fires(zd, tid) == [], tid
        ignored = {e.get("trigger_id") for e in zd.log_events() if e.get("event") == "cron_trigger_ignored"}
        assert set(bad) <= ignored, (bad, ignored)
        ev = event_of(zd, fires(zd, good)[0][1])
        assert ev["payload"] is None and ev["cron"] == "* * * * * *", ev
    finally:
        for tid in bad + [good]:
            disable(zd, tid)


def tick_second_away_from_now():
    """A second of the minute about half a minute from now either way, so
    that no tick of "S * * * * *" is near the present while a test runs."""
    return (int(time.time()) + 30) % 60


def last_tick_at_or_before(t, s):
    """The last whole second <= t (epoch s) whose second of the minute is s."""
    t = int(t)
    return t - ((t - s) % 60)


def test_catch_up_after_an_outage(zd, project, echo):
    """Each trigger last fired an hour ago (every node down since): skip
    drops the missed ticks, latest runs the most recent, all runs every one."""
    s = tick_second_away_from_now()
    now = time.time()
    last = last_tick_at_or_before(now - 3600, s)
    recent = last_tick_at_or_before(now, s)
    missed = list(range((last + 60) * 1000, recent * 1000 + 1, 60000))
    assert len(missed) == 60
    missed_before = metric(zd, "zmesh_cron_missed_total")
    tids = {}
    for policy in ("skip", "latest", "all"):
        # The trigger and its last fire together: the scheduler never sees
        # one without the other.
        rows = zd.sql(
            "WITH t AS (INSERT INTO triggers (project_id, function_id, event_type, config, created_at, updated_at) "
            "VALUES (%s, %s, 'cron', %s, now() - interval '2 hours', now() - interval '2 hours') RETURNING id) "
            "INSERT INTO cron_fires (trigger_id, scheduled_time, fired_at) "
            "SELECT id, to_timestamp(%d), to_timestamp(%d) FROM t RETURNING trigger_id"
            % (q(project["id"]), q(echo["id"]), q(json.dumps(config("%d * * * * *" % s, catch_up=policy,
                                                                            payload=policy))), last, last))
        tids[policy] = rows[0][0]
    try:
        wait_for("the catch-up of all", lambda: len(fires(zd, tids["all"])) >= 61)
        wait_for("the catch-up of latest", lambda: len(fires(zd, tids["latest"])) >= 2)
        wait_for("the missed ticks counted", lambda: metric(zd, "zmesh_cron_missed_total") - missed_before >= 119)
        time.sleep(1)
    finally:
        for tid in tids.values():
            disable(zd, tid)

    assert [r[0] for r in fires(zd, tids["skip"])] == [last * 1000]
    latest = fires(zd, tids["latest"])
    assert [r[0] for r in latest] == [last * 1000, missed[-1]], latest
    assert latest[1][1] and not latest[1][2], latest
    every = fires(zd, tids["all"])
    assert [r[0] for r in every] == [last * 1000] + missed, every
    assert all(r[1] and not r[2] for r in every[1:]), every
    # skip: 60 dropped; latest: 59; all: none.
    assert metric(zd, "zmesh_cron_missed_total") - missed_before == 119
    missed_logs = {e.get("trigger_id"): e for e in zd.log_events() if e.get("event") == "cron_missed"}
    assert missed_logs[tids["skip"]]["missed"] == "60", missed_logs[tids["skip"]]
    assert missed_logs[tids["latest"]]["missed"] == "59", missed_logs[tids["latest"]]
    assert tids["all"] not in missed_logs

    # A caught-up tick's event: its own scheduled time, fired late.
    ev = event_of(zd, every[1][1])
    assert parse_time(ev["scheduled_time"]) == missed[0] and ev["payload"] == "all", ev
    assert parse_time(ev["actual_time"]) - missed[0] > 3000 * 1000, ev


def test_enabled_again_does_not_back_fill(zd, project, echo):
    """Disabled for an hour, then enabled: the ticks of that hour are not
    missed ticks, whatever catch_up says."""
    s = tick_second_away_from_now()
    last = last_tick_at_or_before(time.time() - 3600, s)
    rows = zd.sql(
        "WITH t AS (INSERT INTO triggers (project_id, function_id, event_type, config, enabled, created_at, "
        "updated_at) VALUES (%s, %s, 'cron', %s, false, now() - interval '2 hours', now() - interval '1 hour') "
        "RETURNING id) INSERT INTO cron_fires (trigger_id, scheduled_time) SELECT id, to_timestamp(%d) FROM t "
        "RETURNING trigger_id"
        % (q(project["id"]), q(echo["id"]), q(json.dumps(config("%d * * * * *" % s, catch_up="all"))), last))
    tid = rows[0][0]
    missed_before = metric(zd, "zmesh_cron_missed_total")
    # A witness enabled in the same statement: once it fires, the
    # scheduler has seen both.
    witness = create_trigger(zd, project["id"], echo["id"], config("*/1 * * * * *"), enabled=False)
    zd.sql("UPDATE triggers SET enabled = true WHERE id IN (%s, %s)" % (q(tid), q(witness)))
    try:
        wait_for("the witness fires", lambda: len(fires(zd, witness)) >= 2)
        time.sleep(1)
    finally:
        disable(zd, tid)
        disable(zd, witness)
    assert [r[0] for r in fires(zd, tid)] == [last * 1000]
    assert metric(zd, "zmesh_cron_missed_total") == missed_before


def test_restart_catches_up_or_skips(zd, project, echo):
    """A real outage: the daemon stops for longer than the misfire
    threshold. catch_up all fires every tick of the gap (none lost across
    the restart); skip leaves the gap, counted as missed."""
    all_t = create_trigger(zd, project["id"], echo["id"], config("*/1 * * * * *", catch_up="all"))
    skip_t = create_trigger(zd, project["id"], echo["id"], config("*/1 * * * * *"))
    # Fires of more than a week ago, pruned at the start, but for the last
    # of their trigger (where its ticks are counted from).
    old_t = create_trigger(zd, project["id"], echo["id"], config("0 0 * * *"), enabled=False, age_s=30 * 86400)
    zd.sql("INSERT INTO cron_fires (trigger_id, scheduled_time, fired_at) SELECT %s, t, t FROM "
           "(SELECT date_trunc('day', now()) - d * interval '1 day' AS t FROM generate_series(8, 10) d) x" % q(old_t))
    try:
        wait_for("ticks before the stop", lambda: len(fires(zd, all_t)) >= 2 and len(fires(zd, skip_t)) >= 2)
        assert len(fires(zd, old_t)) == 3
        assert zd.stop() == 0
        time.sleep(MISFIRE_S + 3)
        zd.start()
        restarted = time.time()
        wait_for("ticks after the restart", lambda: fires(zd, skip_t)[-1][0] > restarted * 1000 + 2000)
        wait_for("the catch-up", lambda: fires(zd, all_t)[-1][0] > restarted * 1000 + 2000)
    finally:
        disable(zd, all_t)
        disable(zd, skip_t)
    every = [r[0] for r in fires(zd, all_t)]
    assert every == list(range(every[0], every[-1] + 1000, 1000)), every
    some = [r[0] for r in fires(zd, skip_t)]
    gaps = [b - a for a, b in zip(some, some[1:])]
    assert max(gaps) > 3000, gaps
    assert all(r[1] for r in fires(zd, all_t) + fires(zd, skip_t)), "a fire without a job"
    # The restarted process counted exactly the ticks skip left out.
    assert metric(zd, "zmesh_cron_missed_total") == sum(g // 1000 - 1 for g in gaps), gaps
    kept = wait_for("the prune", lambda: (lambda f: f if len(f) == 1 else None)(fires(zd, old_t)))
    newest = zd.sql("SELECT floor(extract(epoch FROM date_trunc('day', now()) - interval '8 days') * 1000)::bigint")
    assert kept[0][0] == int(newest[0][0]), kept


# ---- several nodes -------------------------------------------------------------


def test_two_nodes_fire_each_tick_once(pgtmp):
    """Two daemons on one cluster, no leader: every tick fired once (one
    fire row, one job, one record) and the nodes' counts add up to the
    ticks; when one node stops, the other fires every tick alone."""
    sock = pgtmp
    r = subprocess.run(["/usr/bin/psql", "-X", "-q", "-h", sock, "-U", "postgres", "-d", "postgres", "-c",
                        "CREATE DATABASE zmeshcp"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=60)
    assert r.returncode == 0, r.stderr
    env = {"DATABASE_URL": "postgresql:///zmeshcp?host=%s&user=postgres" % sock, "ZMESH_PG_SOCKET_DIR": sock,
           "JWT_SECRET_KEY": secrets.token_hex(24)}
    db = "zmeshcp"
    nodes = []
    try:
        for tag in ("node1", "node2"):
            d = Daemon(tag, env=env)
            d.pg_sock = sock
            nodes.append(d)
            d.start()
        n1, n2 = nodes
        # One control plane: the second node knows the admin the first made.
        c = n1.admin()
        p = c.create_project()
        f = c.deploy(p["id"], ECHO_JS)
        assert n2.login(c.email, c.password).get("/projects/%s/functions/%s" % (p["id"], f["id"])).status == 200

        tid = create_trigger(n1, p["id"], f["id"], config("*/1 * * * * *"), db=db)
        try:
            wait_for("eight ticks", lambda: len(fires(n1, tid, db=db)) >= 8)
        finally:
            disable(n1, tid, db=db)
        time.sleep(1.5)
        rows = fires(n1, tid, db=db)
        times = [r[0] for r in rows]
        assert times == list(range(times[0], times[-1] + 1000, 1000)), times
        invs = [r[1] for r in rows]
        assert all(invs) and len(set(invs)) == len(invs), rows
        recs = n1.sql("SELECT id FROM invocations WHERE trigger_id = %s" % q(tid), db=db)
        assert sorted(x[0] for x in recs) == sorted(invs), (recs, invs)
        jobs = n1.sql("SELECT first_invocation_id FROM jobs WHERE trigger_id = %s" % q(tid), db=db)
        assert len(jobs) == len({j[0] for j in jobs}) and {j[0] for j in jobs} <= set(invs), jobs
        won = [n.metrics()["zmesh_cron_fired_total"] for n in nodes]
        assert sum(won) == len(rows), (won, len(rows))
        for n in nodes:
            assert any(e.get("event") == "cron_scheduler_started" for e in n.log_events()), n.log_tail()

        # One node stops: the other goes on alone, nothing to hand over.
        assert n2.stop() == 0, n2.log_tail()
        before = n1.metrics()["zmesh_cron_fired_total"]
        tid2 = create_trigger(n1, p["id"], f["id"], config("*/1 * * * * *"), db=db)
        try:
            wait_for("four ticks of the survivor", lambda: len(fires(n1, tid2, db=db)) >= 4)
        finally:
            disable(n1, tid2, db=db)
        time.sleep(1.5)
        rows = fires(n1, tid2, db=db)
        times = [r[0] for r in rows]
        assert times == list(range(times[0], times[-1] + 1000, 1000)), times
        assert all(r[1] for r in rows), rows
        assert n1.metrics()["zmesh_cron_fired_total"] - before == len(rows)
    finally:
        for d in nodes:
            if d.proc and d.proc.poll() is None:
                stop_and_check(d)
            else:
                d.cleanup()
