DROP FUNCTION accept_sign_in_code(text, text, bigint, bigint, text, bigint, bigint, bigint, bigint, text);
