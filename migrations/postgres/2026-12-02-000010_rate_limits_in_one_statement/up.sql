-- Charges the rate-limit buckets of one request in one statement: one round trip, where a
-- transaction of a read and a write per bucket took two per bucket and two more (issue 14).
-- It is the rule of `limits::Bucket` in Rust, which SQLite runs in its write transaction:
-- keep the two in step (the api tests run both).
--
-- A bucket's `hits` lists the times (Unix milliseconds) of the requests it allowed, comma
-- separated. A request is allowed only if every bucket holds fewer than its limit within
-- its window; then each bucket logs it, dropping the times that have left the window.
-- Otherwise nothing is logged, and `refused` names the first full bucket (1-based) with
-- how long until its oldest time leaves the window. The rows are locked (upsert) in key
-- order, as `RateLimits::delete` locks them, so two statements on the same buckets cannot
-- deadlock; they stay locked until the statement's transaction ends, so concurrent
-- requests on any instance are allowed at most the limit.
CREATE FUNCTION take_rate_limits(
    keys text[], limits bigint[], windows_ms bigint[], now_ms bigint,
    OUT refused integer, OUT retry_after_ms bigint)
LANGUAGE plpgsql AS $$
DECLARE
    stored text[] := array_fill(''::text, ARRAY[coalesce(cardinality(keys), 0)]);
    logs text[] := ARRAY[]::text[];
    i integer;
    found_hits text;
    kept bigint[];
BEGIN
    refused := 0;
    retry_after_ms := 0;
    FOR i IN SELECT s FROM generate_subscripts(keys, 1) AS s ORDER BY keys[s] LOOP
        INSERT INTO rate_limits (key, hits, until_ms) VALUES (keys[i], '', 0)
        ON CONFLICT (key) DO UPDATE SET until_ms = rate_limits.until_ms
        RETURNING rate_limits.hits INTO found_hits;
        stored[i] := found_hits;
    END LOOP;
    FOR i IN 1 .. coalesce(cardinality(keys), 0) LOOP
        SELECT coalesce(array_agg(h.at ORDER BY h.n), ARRAY[]::bigint[]) INTO kept
        FROM unnest(string_to_array(stored[i], ',')::bigint[]) WITH ORDINALITY AS h(at, n)
        WHERE h.at > now_ms - windows_ms[i];
        IF cardinality(kept) >= limits[i] THEN
            refused := i;
            retry_after_ms := coalesce((SELECT min(at) FROM unnest(kept) AS k(at)), now_ms)
                + windows_ms[i] - now_ms;
            RETURN;
        END IF;
        logs := logs || array_to_string(kept || now_ms, ',');
    END LOOP;
    FOR i IN 1 .. coalesce(cardinality(keys), 0) LOOP
        UPDATE rate_limits SET hits = logs[i], until_ms = now_ms + windows_ms[i]
        WHERE key = keys[i];
    END LOOP;
END
$$;
