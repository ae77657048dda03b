DROP FUNCTION take_rate_limits(text[], bigint[], bigint[], bigint);
