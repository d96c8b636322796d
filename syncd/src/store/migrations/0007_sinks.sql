-- Sinks (issue 12): where each configured [[sink]] has got to in the change feed, and the
-- daemon's instance id (the `{instance}` of every `Nats-Msg-Id = {instance}:{seq}`).
--   sink_cursors.acked_seq: the highest seq such that every change up to it was acknowledged
--                           by the sink (a contiguous prefix: it never skips an unacked change).
--   instance.instance_id:   generated once with the database; a database started from scratch
--                           (lost disk) gets a new one, so its restarting seqs never collide with
--                           msg ids the server still remembers.
CREATE TABLE sink_cursors (
    sink       TEXT PRIMARY KEY,
    acked_seq  INTEGER NOT NULL,
    updated_at TEXT NOT NULL,
    -- The last failure (connecting, the stream check, a publish without ack), until the next
    -- acknowledged publish clears it.
    last_error    TEXT,
    last_error_at TEXT
);

CREATE TABLE instance (
    singleton   INTEGER PRIMARY KEY CHECK (singleton = 1),
    instance_id TEXT NOT NULL,
    created_at  TEXT NOT NULL
);
