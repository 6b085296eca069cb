CREATE TABLE t (id int PRIMARY KEY, name text, note text);
INSERT INTO t VALUES (1, 'alice', NULL), (2, 'bob', 'x');
SELECT * FROM t ORDER BY id;
SELECT 1/0;
DO $$BEGIN RAISE NOTICE 'hello %', 42; END$$;
LISTEN ch;
NOTIFY ch, 'payload';
BEGIN;
UPDATE t SET note = 'y' WHERE id = 1;
SELECT broken_column FROM t;
ROLLBACK;
COPY t TO STDOUT;
COPY t FROM STDIN;
3	carol	\N
4	dave	z
\.
SELECT count(*) FROM t \; SELECT now() IS NOT NULL AS ok;
