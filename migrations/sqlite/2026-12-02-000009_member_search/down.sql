DROP TRIGGER users_search_again;
DROP TRIGGER users_search_out;
DROP TRIGGER users_search_in;
DROP TABLE users_search;
