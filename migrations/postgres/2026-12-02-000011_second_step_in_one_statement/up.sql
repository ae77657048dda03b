-- Signs in with an authenticator code in one statement, when everything goes right: one
-- round trip where the transaction of the second step took eleven (issue 14). The Rust
-- side has already matched the code to `step` with the user's secret (NULL when it matched
-- none: that is refused at the step, after the same charge and checks as a right code, so
-- a refusal's time says nothing about the code). Under the same locks,
-- in the same order as the full path in Rust (`auth::factors::totp::verify`: the network's
-- bucket, the user's row, the app's row), this
--   - charges the network's bucket (`take_rate_limits`),
--   - checks that the second step is not locked (`limits::claim_second_factor_attempt`),
--   - accepts the step only if it is later than every step accepted before (the replay
--     rule of `TotpCredential::accept_step`), and only while the app's row still holds
--     `sealed_secret`, the ciphertext the code was matched with (the secret was read
--     before the user's lock: re-enrolling meanwhile, which takes that lock, replaces it),
--   - ends the failure streak, records the sign-in and appends `events` (audit rows as a
--     JSON array, in order).
-- If any check fails, nothing is written and it answers false: the caller then runs the
-- full path, which charges, counts, audits and refuses as usual. Keep the two in step.
CREATE FUNCTION accept_sign_in_code(
    signing_in text, sealed_secret text, step bigint, now_s bigint,
    bucket_key text, bucket_limit bigint, bucket_window_ms bigint, now_ms bigint,
    most_failures bigint, events text,
    OUT accepted boolean)
LANGUAGE plpgsql AS $$
DECLARE
    failures bigint;
    locked_until bigint;
BEGIN
    IF (SELECT t.refused FROM take_rate_limits(
            ARRAY[bucket_key], ARRAY[bucket_limit], ARRAY[bucket_window_ms], now_ms) AS t) <> 0
    THEN
        accepted := false;
        RETURN;
    END IF;
    SELECT u.second_factor_failures, u.second_factor_locked_until INTO failures, locked_until
    FROM users AS u WHERE u.id = signing_in FOR UPDATE;
    IF NOT FOUND OR failures >= most_failures OR coalesce(locked_until, 0) > now_s THEN
        RAISE EXCEPTION 'not accepted here' USING ERRCODE = 'TS001';
    END IF;
    UPDATE totp_credentials AS c SET last_step = step
    WHERE c.user_id = signing_in AND c.secret_ciphertext = sealed_secret
      AND c.last_step < step;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'not accepted here' USING ERRCODE = 'TS001';
    END IF;
    UPDATE users AS u
    SET second_factor_failures = 0, second_factor_locked_until = NULL, last_sign_in_at = now_s
    WHERE u.id = signing_in;
    INSERT INTO audit_events (created_at, workspace_id, actor_id, actor_label, subject_id,
                              subject_label, kind, ip, detail, actor_kind)
    SELECT e.created_at, e.workspace_id, e.actor_id, e.actor_label, e.subject_id,
           e.subject_label, e.kind, e.ip, e.detail, e.actor_kind
    FROM json_populate_recordset(NULL::audit_events, events::json) WITH ORDINALITY AS e
    ORDER BY e.ordinality;
    accepted := true;
EXCEPTION
    -- Undoes the bucket's charge: the full path charges it again.
    WHEN SQLSTATE 'TS001' THEN
        accepted := false;
END
$$;
