-- Retention (`[retention]`): old webhook events and runs are deleted by age, a batch at a time
-- (store/retention.rs); these indexes make each batch read only the rows it deletes.
CREATE INDEX webhook_events_by_received ON webhook_events (received_at);
CREATE INDEX runs_by_started ON runs (started_at);
