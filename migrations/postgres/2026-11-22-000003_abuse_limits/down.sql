ALTER TABLE users DROP COLUMN second_factor_locked_until;
ALTER TABLE users DROP COLUMN second_factor_failures;
DROP INDEX rate_limits_until_idx;
DROP TABLE rate_limits;
