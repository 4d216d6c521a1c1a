-- One pgbench transaction = one claim + one complete, each its own
-- autocommitted statement (two round trips, as few as a claim can take).
UPDATE q SET state = 'leased', holder = 'op' || :client_id, token = token + 1, claimed_at = now()
 WHERE id = (SELECT id FROM q WHERE state = 'ready' ORDER BY id LIMIT 1 FOR UPDATE SKIP LOCKED)
 RETURNING id AS claimed \gset
UPDATE q SET state = 'done', outcome = 'accepted' WHERE id = :claimed AND state = 'leased';
