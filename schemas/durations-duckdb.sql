-- durations-duckdb.sql — the views durations.sql reads, over recordings
-- in DuckDB (>= 1.1), and the two functions it calls by their Spark names.
--
--   SET VARIABLE tcpcong_files = 'recordings/**/*.parquet';  -- a file, a
--                                  -- glob, or a list: ['a.parquet', 'b.parquet']
--   SET VARIABLE tcpcong_accounting = 'full';                -- or 'between'
--   .read schemas/durations-duckdb.sql
--   .read schemas/durations.sql
--
-- tcpcong_rows is every row of the files (by column name, so files of
-- several schema minors mix), with the file's path and the row's index in
-- it. A file older than the capture rows (schema_minor 0) gets one made up
-- from its Parquet footer, which holds the same object.

CREATE OR REPLACE TEMP MACRO get_json_object(j, path) AS json_extract_string(j, path);
CREATE OR REPLACE TEMP MACRO raise_error(message) AS error(message);

CREATE OR REPLACE TEMP VIEW tcpcong_file_rows AS
SELECT *
-- (by name: older files have no capture column, which reads as NULL)
FROM (SELECT NULL::VARCHAR AS capture WHERE false
      UNION ALL BY NAME
      SELECT * FROM read_parquet(getvariable('tcpcong_files'), filename = true,
                                 file_row_number = true, union_by_name = true));

CREATE OR REPLACE TEMP VIEW tcpcong_rows AS
SELECT * FROM tcpcong_file_rows
UNION ALL BY NAME
SELECT file_name AS filename, 'capture' AS kind, 'end' AS new_state,
       decode(value) AS capture
FROM parquet_kv_metadata(getvariable('tcpcong_files'))
WHERE decode(key) = 'tcpcong'
  AND file_name NOT IN (SELECT filename FROM tcpcong_file_rows WHERE kind = 'capture');

CREATE OR REPLACE TEMP VIEW tcpcong_params AS
SELECT getvariable('tcpcong_accounting') AS accounting;
