"""Numbered schema migrations of the state database, applied in order at start-up.

Never edit a migration that has shipped; add the next number instead.
"""

MIGRATIONS: dict[int, str] = {
    1: """
    CREATE TABLE runs (
        id               TEXT PRIMARY KEY,
        workflow         TEXT NOT NULL,
        status           TEXT NOT NULL,
        params           TEXT NOT NULL,          -- JSON
        definition       TEXT NOT NULL,          -- JSON of the workflow as checked at start
        file             TEXT NOT NULL,          -- where the definition came from
        created_at       REAL NOT NULL,
        started_at       REAL,
        finished_at      REAL,
        outputs          TEXT,                   -- JSON
        error            TEXT,
        lease_owner      TEXT,                   -- host:pid:starttime of the driving process
        lease_expires    REAL,
        cancel_requested INTEGER NOT NULL DEFAULT 0
    );
    CREATE INDEX runs_by_created ON runs (created_at);
    CREATE INDEX runs_by_workflow ON runs (workflow, created_at);
    CREATE INDEX runs_by_status ON runs (status, created_at);

    CREATE TABLE steps (
        run_id          TEXT NOT NULL REFERENCES runs (id) ON DELETE CASCADE,
        step_id         TEXT NOT NULL,
        position        INTEGER NOT NULL,        -- order in the workflow
        skill           TEXT NOT NULL,
        action          TEXT NOT NULL,
        status          TEXT NOT NULL,
        attempts        INTEGER NOT NULL DEFAULT 0,  -- every attempt ever, for numbering
        failed_attempts INTEGER NOT NULL DEFAULT 0,  -- failures since the last (re)start
        params          TEXT,                    -- JSON, as rendered for the last attempt
        result          TEXT,                    -- JSON
        error           TEXT,
        started_at      REAL,
        finished_at     REAL,
        finished_seq    INTEGER,                 -- completion order, for rollback
        PRIMARY KEY (run_id, step_id)
    ) WITHOUT ROWID;

    CREATE TABLE attempts (
        run_id      TEXT NOT NULL,
        step_id     TEXT NOT NULL,
        kind        TEXT NOT NULL,               -- action | rollback
        attempt     INTEGER NOT NULL,
        -- running | succeeded | failed | timeout | interrupted
        status      TEXT NOT NULL,
        started_at  REAL NOT NULL,
        finished_at REAL,
        error       TEXT,
        exit_code   INTEGER,
        stderr_tail TEXT,
        PRIMARY KEY (run_id, step_id, kind, attempt)
    ) WITHOUT ROWID;

    CREATE TABLE events (
        seq     INTEGER PRIMARY KEY AUTOINCREMENT,
        run_id  TEXT NOT NULL,
        ts      REAL NOT NULL,
        type    TEXT NOT NULL,
        step_id TEXT,
        attempt INTEGER,
        data    TEXT                             -- JSON
    );
    CREATE INDEX events_by_run ON events (run_id, seq);

    -- The event log is the history, and the tables above are its projection: each
    -- state change is one INSERT into events, and these triggers apply it to runs,
    -- steps and attempts in the same statement, hence the same transaction. A change
    -- costs one round trip to the database, and history and tables cannot disagree.
    CREATE TRIGGER project_run_status AFTER INSERT ON events
    WHEN NEW.type LIKE 'run!_%' ESCAPE '!' AND NEW.data ->> '$.status' IS NOT NULL
    BEGIN
        UPDATE runs SET
            status = NEW.data ->> '$.status',
            error = NEW.data ->> '$.error',
            outputs = COALESCE(NEW.data -> '$.outputs', outputs),
            started_at = CASE NEW.data ->> '$.status' WHEN 'running'
                         THEN COALESCE(started_at, NEW.ts) ELSE started_at END,
            finished_at = CASE WHEN NEW.data ->> '$.status' IN ('succeeded', 'failed',
                               'cancelled', 'timed_out', 'rolled_back', 'rollback_failed')
                          THEN NEW.ts END
        WHERE id = NEW.run_id;
    END;

    CREATE TRIGGER project_cancel_request AFTER INSERT ON events
    WHEN NEW.type = 'run_cancel_requested'
    BEGIN
        UPDATE runs SET cancel_requested = 1 WHERE id = NEW.run_id;
    END;

    -- Resuming: attempts a dead process left running were interrupted and do not count
    -- against the retry budget; a redrive also gives failed steps a fresh budget.
    CREATE TRIGGER project_resume AFTER INSERT ON events
    WHEN NEW.type IN ('run_recovered', 'run_redrive')
    BEGIN
        UPDATE attempts SET status = 'interrupted', finished_at = NEW.ts
        WHERE run_id = NEW.run_id AND status = 'running';
        UPDATE steps SET status = 'pending', error = NULL, finished_at = NULL,
            finished_seq = NULL,
            failed_attempts = CASE NEW.type WHEN 'run_redrive' THEN 0 ELSE failed_attempts END
        WHERE run_id = NEW.run_id AND (status = 'running' OR NEW.type = 'run_redrive'
                                       AND status IN ('failed', 'upstream_failed', 'cancelled'));
        UPDATE runs SET error = NULL, finished_at = NULL, outputs = NULL WHERE id = NEW.run_id;
    END;

    CREATE TRIGGER project_attempt_started AFTER INSERT ON events
    WHEN NEW.type IN ('step_started', 'compensation_started')
    BEGIN
        INSERT INTO attempts (run_id, step_id, kind, attempt, status, started_at)
        VALUES (NEW.run_id, NEW.step_id,
                CASE NEW.type WHEN 'step_started' THEN 'action' ELSE 'rollback' END,
                NEW.attempt, 'running', NEW.ts);
        UPDATE steps SET status = 'running', attempts = NEW.attempt,
            params = NEW.data -> '$.params', started_at = COALESCE(started_at, NEW.ts)
        WHERE run_id = NEW.run_id AND step_id = NEW.step_id AND NEW.type = 'step_started';
    END;

    CREATE TRIGGER project_attempt_failed AFTER INSERT ON events
    WHEN NEW.type = 'attempt_failed'
    BEGIN
        UPDATE attempts SET status = NEW.data ->> '$.status', finished_at = NEW.ts,
            error = NEW.data ->> '$.error', exit_code = NEW.data ->> '$.exit_code',
            stderr_tail = NEW.data ->> '$.stderr_tail'
        WHERE run_id = NEW.run_id AND step_id = NEW.step_id
          AND kind = NEW.data ->> '$.kind' AND attempt = NEW.attempt;
        UPDATE steps SET failed_attempts = failed_attempts + 1
        WHERE run_id = NEW.run_id AND step_id = NEW.step_id AND NEW.data ->> '$.kind' = 'action';
    END;

    CREATE TRIGGER project_step_end AFTER INSERT ON events
    WHEN NEW.type IN ('step_succeeded', 'step_failed', 'step_skipped',
                      'step_upstream_failed', 'step_cancelled')
    BEGIN
        UPDATE attempts SET status = 'succeeded', finished_at = NEW.ts
        WHERE NEW.type = 'step_succeeded' AND run_id = NEW.run_id AND step_id = NEW.step_id
          AND kind = 'action' AND attempt = NEW.attempt;
        UPDATE steps SET status = substr(NEW.type, 6), result = NEW.data -> '$.result',
            error = NEW.data ->> '$.error', finished_at = NEW.ts,
            started_at = COALESCE(started_at, NEW.ts), finished_seq = NEW.seq
        WHERE run_id = NEW.run_id AND step_id = NEW.step_id;
    END;

    CREATE TRIGGER project_compensation AFTER INSERT ON events
    WHEN NEW.type IN ('step_compensated', 'step_compensation_failed')
    BEGIN
        UPDATE attempts SET finished_at = NEW.ts, error = NEW.data ->> '$.error',
            status = CASE NEW.type WHEN 'step_compensated' THEN 'succeeded' ELSE 'failed' END
        WHERE run_id = NEW.run_id AND step_id = NEW.step_id AND kind = 'rollback'
          AND attempt = NEW.attempt;
        UPDATE steps SET status = substr(NEW.type, 6)
        WHERE run_id = NEW.run_id AND step_id = NEW.step_id;
    END;

    -- Events are history: never changed, never removed.
    CREATE TRIGGER events_append_only_update BEFORE UPDATE ON events
    BEGIN SELECT RAISE(ABORT, 'events are append-only'); END;
    CREATE TRIGGER events_append_only_delete BEFORE DELETE ON events
    BEGIN SELECT RAISE(ABORT, 'events are append-only'); END;
    """,
    2: """
    -- Alerts already sent, so that a second notification or a restart sends none again.
    -- subject: a run id, or for a stale workflow "<workflow>@<last success run id|never>".
    CREATE TABLE alerts_sent (
        subject  TEXT NOT NULL,
        -- run_failed | rollback_failed | run_timed_out | workflow_stale
        kind     TEXT NOT NULL,
        workflow TEXT NOT NULL,
        sent_at  REAL NOT NULL,
        PRIMARY KEY (subject, kind)
    ) WITHOUT ROWID;
    """,
    3: """
    -- Performance statistics (`orchestratorctl stats`) per skill/action, answered from
    -- covering indexes rather than by scanning and sorting every step of the history.
    -- A step's duration is kept as a column (an index on an expression cannot cover a
    -- query in SQLite before 3.41), and its run's workflow is copied onto it.
    ALTER TABLE steps ADD COLUMN workflow TEXT;
    ALTER TABLE steps ADD COLUMN duration REAL;   -- finished_at - started_at, seconds
    UPDATE steps SET duration = finished_at - started_at,
        workflow = (SELECT workflow FROM runs WHERE runs.id = steps.run_id);

    CREATE TRIGGER project_step_duration AFTER UPDATE OF finished_at ON steps
    WHEN NEW.finished_at IS NOT OLD.finished_at
    BEGIN
        UPDATE steps SET duration = NEW.finished_at - NEW.started_at
        WHERE run_id = NEW.run_id AND step_id = NEW.step_id;
    END;

    -- Steps that ran an attempt and ended, in duration order within each skill/action:
    -- counts in one index scan, percentiles by seeking to a rank (LIMIT 1 OFFSET k).
    CREATE INDEX steps_stats ON steps (skill, action, duration, started_at, status, attempts)
    WHERE attempts > 0 AND duration IS NOT NULL;
    CREATE INDEX steps_stats_by_workflow
    ON steps (workflow, skill, action, duration, started_at, status, attempts)
    WHERE attempts > 0 AND duration IS NOT NULL;

    -- The last success of each workflow (metrics at start-up, staleness alerts).
    CREATE INDEX runs_last_success ON runs (workflow, finished_at) WHERE status = 'succeeded';
    """,
    4: """
    -- The leader of a command attempt's process group as host:pid:starttime (processes.py),
    -- so that a resume stops what a dead driver left running before the attempt runs again.
    ALTER TABLE attempts ADD COLUMN process TEXT;
    -- The earliest start of a step's next attempt during a retry back-off: a resume waits
    -- for it rather than starting the attempt at once.
    ALTER TABLE steps ADD COLUMN not_before REAL;

    CREATE TRIGGER project_attempt_process AFTER INSERT ON events
    WHEN NEW.type = 'attempt_process'
    BEGIN
        UPDATE attempts SET process = NEW.data ->> '$.process'
        WHERE run_id = NEW.run_id AND step_id = NEW.step_id
          AND kind = NEW.data ->> '$.kind' AND attempt = NEW.attempt;
    END;

    CREATE TRIGGER project_step_retry AFTER INSERT ON events
    WHEN NEW.type = 'step_retry' AND NEW.data ->> '$.not_before' IS NOT NULL
    BEGIN
        UPDATE steps SET not_before = NEW.data ->> '$.not_before'
        WHERE run_id = NEW.run_id AND step_id = NEW.step_id;
    END;

    -- A cancel request lives until the run ends: taking the lease no longer clears it, so
    -- whoever drives the run next honours it (store.request_cancel).
    CREATE TRIGGER project_run_end AFTER INSERT ON events
    WHEN NEW.type LIKE 'run!_%' ESCAPE '!' AND NEW.data ->> '$.status' IN (
        'succeeded', 'failed', 'cancelled', 'timed_out', 'rolled_back', 'rollback_failed')
    BEGIN
        UPDATE runs SET cancel_requested = 0 WHERE id = NEW.run_id;
    END;
    UPDATE runs SET cancel_requested = 0 WHERE status IN (
        'succeeded', 'failed', 'cancelled', 'timed_out', 'rolled_back', 'rollback_failed');
    """,
    5: """
    -- A step's result is kept in clear once only, in steps.result, where resume reads it
    -- to render later steps' params; the store writes it in the same transaction as the
    -- step's end event, which records the result as shown (secrets masked). The event
    -- log no longer holds a second clear copy.
    DROP TRIGGER project_step_end;
    CREATE TRIGGER project_step_end AFTER INSERT ON events
    WHEN NEW.type IN ('step_succeeded', 'step_failed', 'step_skipped',
                      'step_upstream_failed', 'step_cancelled')
    BEGIN
        UPDATE attempts SET status = 'succeeded', finished_at = NEW.ts
        WHERE NEW.type = 'step_succeeded' AND run_id = NEW.run_id AND step_id = NEW.step_id
          AND kind = 'action' AND attempt = NEW.attempt;
        UPDATE steps SET status = substr(NEW.type, 6),
            error = NEW.data ->> '$.error', finished_at = NEW.ts,
            started_at = COALESCE(started_at, NEW.ts), finished_seq = NEW.seq
        WHERE run_id = NEW.run_id AND step_id = NEW.step_id;
    END;
    """,
    6: """
    -- AIDB (orchestratord/aidb): its skill catalog as last fetched, used while it is down;
    -- what we published to it; and the outbox of execution history records.
    CREATE TABLE aidb_skills (
        slug       TEXT PRIMARY KEY,
        record     TEXT NOT NULL,                -- JSON, as AIDB answered it
        fetched_at REAL NOT NULL
    ) WITHOUT ROWID;
    CREATE TABLE aidb_state (
        key   TEXT PRIMARY KEY,                  -- history | catalog_fetched_at | published:<skill>
        value TEXT NOT NULL
    ) WITHOUT ROWID;

    -- One row per finished step attempt and per run end, inserted by the trigger below in
    -- the transaction of the event itself: a record exists exactly when its event does,
    -- whatever dies afterwards. The sender builds the body from the run's rows when it
    -- sends (redacted then), and marks the row sent once AIDB has answered 2xx.
    CREATE TABLE aidb_outbox (
        id             INTEGER PRIMARY KEY AUTOINCREMENT,
        interaction_id TEXT NOT NULL UNIQUE,     -- what AIDB recognises a redelivery by
        event_seq      INTEGER NOT NULL,
        run_id         TEXT NOT NULL,
        step_id        TEXT,                     -- NULL: the run's own record
        attempt        INTEGER,
        created_at     REAL NOT NULL,
        tries          INTEGER NOT NULL DEFAULT 0,
        next_try       REAL NOT NULL DEFAULT 0,
        last_error     TEXT,
        sent_at        REAL,
        rejected       INTEGER NOT NULL DEFAULT 0 -- AIDB refused it as invalid: kept, not resent
    );
    CREATE INDEX aidb_outbox_pending ON aidb_outbox (next_try)
        WHERE sent_at IS NULL AND NOT rejected;

    CREATE TRIGGER aidb_history_outbox AFTER INSERT ON events
    WHEN (NEW.type IN ('step_succeeded', 'step_failed', 'step_cancelled')
          OR NEW.type LIKE 'run!_%' ESCAPE '!' AND NEW.data ->> '$.status' IN (
             'succeeded', 'failed', 'cancelled', 'timed_out', 'rolled_back', 'rollback_failed'))
      AND EXISTS (SELECT 1 FROM aidb_state WHERE key = 'history' AND value = 'on')
    BEGIN
        INSERT OR IGNORE INTO aidb_outbox (interaction_id, event_seq, run_id, step_id, attempt,
                                           created_at)
        VALUES (CASE WHEN NEW.step_id IS NULL
                     THEN printf('orchestrator:%s:run:%d', NEW.run_id, NEW.seq)
                     ELSE printf('orchestrator:%s:%s:%d', NEW.run_id, NEW.step_id,
                                 COALESCE(NEW.attempt, 0)) END,
                NEW.seq, NEW.run_id, NEW.step_id, NEW.attempt, NEW.ts);
    END;
    """,
    7: """
    -- The steps that ran and retried or did not succeed, about a tenth of a history:
    -- `stats` reads retries and failures from here, so that its pass over steps_stats
    -- only counts, without decoding each step's status and attempts (a 100,000-run
    -- history: the counting pass went from 54 to 24 ms; bench/history.py). Written only
    -- for such steps: a step that succeeds at its first attempt never enters it.
    CREATE INDEX steps_stats_exceptions
    ON steps (skill, action, workflow, started_at, status, attempts, duration)
    WHERE attempts > 0 AND duration IS NOT NULL
      AND (attempts > 1 OR status NOT IN ('succeeded', 'compensated', 'compensation_failed'));
    """,
}
