-- durations.sql — per-flow congestion-state dwell times from raw tcpcong
-- recordings (event schema v1), in the SQL that DuckDB (>= 1.1) and Spark
-- SQL (>= 3.5) both run: one query, two engines.
--
-- Reproduces `tcpcong analyze FILES --all --format json --accounting MODE`
-- (no interval, no --since/--until, no port or flow filters): one row per
-- flow with flow, family, saddr, sport, daddr, dport, open_ns, disorder_ns,
-- cwr_ns, recovery_ns, loss_ns (integer nanoseconds), changes, host and
-- boot_id (flows are keyed by (host, boot_id, flow): socket cookies are
-- unique per boot only), and mismatches (events whose old state was not
-- the state the flow was in: lost events), as the JSON output has them.
-- Not for overlapping recordings of one boot (two recorders at once): see
-- Limitations at the end.
--
-- It reads two views, and nothing but the rows (no Parquet footer):
--
--   tcpcong_rows    every row of the recordings, with `filename` (the
--                   file's path) and `file_row_number` (the row's index in
--                   its file);
--   tcpcong_params  one row: `accounting`, 'full' or 'between'.
--
-- DuckDB: durations-duckdb.sql makes them from variables (see there):
--
--   SET VARIABLE tcpcong_files = 'recordings/**/*.parquet';
--   SET VARIABLE tcpcong_accounting = 'full';
--   .read schemas/durations-duckdb.sql
--   .read schemas/durations.sql
--
-- Spark (pyspark; Parquet's row index is `_metadata.row_index`):
--
--   rows = spark.read.parquet("s3://bucket/tcpcong/")   # hive partitions too
--   rows.select("*", F.col("_metadata.file_path").alias("filename"),
--               F.col("_metadata.row_index").alias("file_row_number")) \
--       .createOrReplaceTempView("tcpcong_rows")
--   spark.sql("SELECT 'full' AS accounting").createOrReplaceTempView("tcpcong_params")
--   table = spark.sql(open("schemas/durations.sql").read())
--
-- `analyze DIR` reads every *.parquet below DIR except hidden files, and
-- also the unfinished files of captures still running or killed
-- (.NAME.inprogress, Arrow IPC streams, which these engines' Parquet
-- readers do not read): the glob 'DIR/**/*.parquet' is its equivalent for
-- finished recordings only.
--
-- The engine's rules (src/analyze/engine/mod.rs; files, clocks and captures in
-- src/record/format/reader.rs `Dataset`), as expressed here:
--
-- * Clock. All files of one boot share one clock: wall time = ktime_ns +
--   the clock_offset_ns of that boot's first file in path order (as analyze
--   does), so files of one boot keep exact ktime order. A file's span is
--   [start_ktime_ns, end_ktime_ns] + that offset (the `tcpcong` metadata object: the
--   file's end row, which survives a rewrite, or its Parquet footer).
-- * Data set. start = min file start, end = max file end, over all files.
--   The start clips every credited interval and every change and mismatch
--   (events before it set state only).
-- * Captures. Per boot, files sorted by (start, path) form runs of
--   overlapping or touching files: a file joins the current capture if its
--   start is not after the latest end of the files so far in it (a rotated
--   series, where each file starts where the last ended, is one capture);
--   otherwise it starts a new capture (format/reader.rs `Dataset::scan`). A capture's span is
--   [min start, max end] of its files, and it has lifecycle events only if
--   all its files have (`lifecycle`).
-- * Per flow (boot_id, flow) events are taken in (capture, time, file start,
--   file path, row in file) order: the order analyze feeds them (capture by
--   capture; within one, a stable merge by time of its files' rows).
-- * Segments. A flow is timed only inside the captures it was seen in
--   (engine.rs `Engine::set_span`, `Flow::enter_span`): its events of one
--   capture form one segment (boot_id, flow, capture_no), and each segment
--   is a timeline of its own. When a flow's event comes from another capture
--   than its previous one, the previous segment is closed as at the end of
--   its capture (see Tail) and the flow's state is forgotten: no current
--   state, no pending head; only "closed before" (the engine's `reused`)
--   carries over. So a dwell period never runs across the gap between two
--   captures (nothing was recorded then), a mismatch is never detected
--   across it, and the next segment starts as if the flow were first seen
--   there. Everything below is per segment unless it says per flow.
-- * Only ca_state events and tcp_state events whose new state is
--   `established` or `close` count; other TCP states (fin_wait1, ...) are
--   ignored entirely, and syn_sent/syn_recv only mark a birth (below): a
--   flow with only those has no row. (With
--   --accounting between an `established` still counts as the flow's event
--   of its capture -- it starts a segment and labels a new flow -- but moves
--   nothing.)
-- * Snapshot rows (Full accounting only; with --accounting between they are
--   ignored entirely) count as ca_state events that are self-transitions
--   into the congestion state they found (their new_state), and credit the
--   period in progress up to them: the flow was seen in that state then, so
--   a period is credited in slices that end at its snapshots, and the time
--   up to a flow's last snapshot counts even without a tail. A snapshot is
--   never a change; one that finds the flow in another state than it was
--   in is a mismatch, as an event is. A head is never discarded once a
--   snapshot followed (or was) the segment's first event: the socket was
--   seen to exist.
-- * The flow's addresses are those of its first counted event (per flow).
-- * The state a flow is in ("cur") before an event: the new_state of the
--   segment's last ca_state event before it; none after a `close` (or
--   before anything in the segment); `open` once `established` is seen
--   while it is in none (Full accounting only: with --accounting between,
--   `established` is ignored).
-- * A ca_state event old->new with cur = s:
--     - s none:            starts a period in `new` at t;
--     - old <> s:          MISMATCH: counted; the span since the last period
--                          began is credited to nobody; starts a period in
--                          `new` at t;
--     - old = s, new = s:  self-transition: nothing at all;
--     - old = s, new <> s: the period in s is credited [period start, t);
--                          a period in `new` starts at t.
--   Every ca_state event with new <> old is a change (in each of the three
--   cases above that is exactly when the engine counts one), except, with
--   --accounting between, one with s none: as in BCC, the first event of a
--   timeline only starts the clock.
-- * `close` ends the timeline: cur becomes none, and the flow counts as
--   closed from then on (per flow, in later captures too). In Full
--   accounting the period in progress is credited up to the close.
-- * Birth (Full accounting only): a `syn_sent` or `syn_recv` of the flow
--   in the capture of its first counted event, before that event (the
--   earliest), is its birth. A timeline never starts before it: the head
--   (below) starts at the birth instead of the capture's start; if the first
--   event is a self-transition, or an `established`, the flow has been in
--   that state (Open) since its birth: one period from the birth, no head,
--   and a later `established` discards nothing.
-- * Head (Full accounting only): if a segment's first event is a ca_state
--   event and the flow was never closed before it (per flow: no `close` in
--   an earlier segment either), the time [capture start, t) is credited to
--   that event's old state, where capture start is the start of the
--   segment's capture (not the data set's) -- unless that first event is a
--   self-transition (a passive child's open->open) and an `established`
--   comes in the same segment before anything else that moves the flow (a
--   close, or a ca_state event other than the same self-transition): then
--   the socket did not exist before it was established, the head is
--   discarded, and the period restarts at the `established`. A head still
--   pending when the segment ends (or at the data set's end) is credited. A
--   segment whose first event is `established` or `close` has no head, and
--   neither has a timeline after a close.
-- * Tail (Full accounting only): the state a flow is in after the last event
--   of a segment is credited up to the end of that segment's capture (at
--   most the data set's end), and only if that capture has lifecycle events.
--   So a flow's last tail ends at the end of the capture of its latest
--   event, never in a later capture of its boot it was not seen in, and
--   follows that capture's lifecycle, not the boot's last capture's.
-- * A flow has a row when it got credited time > 0, a change or a mismatch
--   (the engine creates its row accumulator exactly then).
--
-- Limitations: an event that two overlapping captures both recorded (two
-- recorders at once) is counted twice here; analyze counts it once (same
-- flow and change from two files within 1 ms). analyze clamps negative wall times to 0; times before 1970
-- cannot occur in real recordings and are not handled here. Captures are
-- formed assuming every file ends no earlier than it starts (the writer
-- guarantees it), and ties are broken by path as a string (analyze compares
-- paths component by component; they differ only for exotic names). Every
-- event is assumed to lie within its file's [start, end] (record/capture/mod.rs makes
-- the end at least the last event; the start is read just after attaching):
-- the engine never credits a stretch twice (`credited_to`), which only
-- differs from the periods computed here if an event of a later capture is
-- timed before the end of the flow's previous capture.

WITH
-- One row per file: its `tcpcong` metadata object, from the file's own end
-- row (kind 'capture'), which survives a rewrite by another engine.
file_meta AS (
    SELECT filename, capture AS m
    FROM tcpcong_rows
    WHERE kind = 'capture' AND new_state = 'end'
),
files AS (
    SELECT filename,
           get_json_object(m, '$.hostname')                          AS host,
           get_json_object(m, '$.boot_id')                           AS boot_id,
           CAST(get_json_object(m, '$.start_ktime_ns') AS BIGINT)    AS start_ktime_ns,
           CAST(get_json_object(m, '$.end_ktime_ns') AS BIGINT)      AS end_ktime_ns,
           CAST(get_json_object(m, '$.clock_offset_ns') AS BIGINT)   AS clock_offset_ns,
           CAST(get_json_object(m, '$.lifecycle') AS BOOLEAN)        AS lifecycle
    FROM file_meta
),
-- One clock per boot: the offset of the boot's first file in path order.
boots AS (
    SELECT boot_id, min_by(clock_offset_ns, filename) AS boot_offset
    FROM files GROUP BY boot_id
),
files_on_timeline AS (
    SELECT f.filename, f.host, f.boot_id, f.lifecycle, b.boot_offset,
           f.start_ktime_ns + b.boot_offset AS file_start_ns,
           f.end_ktime_ns + b.boot_offset   AS file_end_ns
    FROM files f JOIN boots b USING (boot_id)
),
-- The data set: its start clips all credit and counts; the accounting mode.
dataset AS (
    SELECT min(file_start_ns) AS start_ns,
           max(file_end_ns)   AS end_ns,
           CASE lower(p.accounting)
               WHEN 'full' THEN true
               WHEN 'between' THEN false
               ELSE raise_error('accounting must be ''full'' or ''between''')
           END AS full_acc
    FROM files_on_timeline CROSS JOIN tcpcong_params p
    GROUP BY p.accounting
),
-- Captures: per boot, in (start, path) order, a file joins the current
-- capture if it starts no later than the latest end of the boot's files before it
-- (with ends >= starts, that latest end is the current capture's), and
-- starts a new capture otherwise.
file_starts_capture AS (
    SELECT *,
           NOT coalesce(file_start_ns <= max(file_end_ns) OVER (
                            PARTITION BY boot_id ORDER BY file_start_ns, filename
                            ROWS BETWEEN UNBOUNDED PRECEDING AND 1 PRECEDING),
                        false) AS starts_capture
    FROM files_on_timeline
),
files_in_captures AS (
    SELECT *,
           sum(CAST(starts_capture AS INTEGER)) OVER (
               PARTITION BY boot_id ORDER BY file_start_ns, filename
               ROWS BETWEEN UNBOUNDED PRECEDING AND CURRENT ROW) AS capture_no
    FROM file_starts_capture
),
-- A capture's span and whether it recorded lifecycle events.
captures AS (
    SELECT boot_id, capture_no,
           min(file_start_ns)  AS cap_start_ns,
           max(file_end_ns)    AS cap_end_ns,
           bool_and(lifecycle) AS cap_lifecycle
    FROM files_in_captures GROUP BY boot_id, capture_no
),
-- The events the engine reacts to, numbered per flow in feeding order
-- (seq) and per segment, i.e. per flow and capture (seg_seq).
ev AS (
    SELECT f.host, f.boot_id, f.capture_no, e.flow, e.family, e.saddr, e.sport, e.daddr, e.dport,
           CAST(e.ktime_ns AS BIGINT) + f.boot_offset AS t,
           e.kind IN ('ca_state', 'snapshot')                      AS is_ca,
           e.kind = 'snapshot'                                     AS is_snap,
           e.kind = 'tcp_state' AND e.new_state = 'close'          AS is_close,
           e.kind = 'tcp_state' AND e.new_state = 'established'
               AND d.full_acc                                      AS is_est,
           -- a snapshot reads as a self-transition into the state it found
           CASE WHEN e.kind = 'snapshot' THEN e.new_state ELSE e.old_state END AS old_state,
           e.new_state,
           row_number() OVER (
               PARTITION BY f.boot_id, e.flow
               ORDER BY f.capture_no, e.ktime_ns, f.file_start_ns, f.filename,
                        e.file_row_number
           ) AS seq,
           row_number() OVER (
               PARTITION BY f.boot_id, e.flow, f.capture_no
               ORDER BY e.ktime_ns, f.file_start_ns, f.filename, e.file_row_number
           ) AS seg_seq
    FROM tcpcong_rows e
    JOIN files_in_captures f USING (filename)
    CROSS JOIN dataset d
    WHERE e.kind = 'ca_state'
       OR (e.kind = 'snapshot' AND d.full_acc)
       OR (e.kind = 'tcp_state' AND e.new_state IN ('established', 'close'))
),
-- Births: a socket's `syn_sent` (active open) or `syn_recv` (passive
-- child), the earliest per flow and capture.
births AS (
    SELECT f.boot_id, f.capture_no, e.flow,
           min(CAST(e.ktime_ns AS BIGINT) + f.boot_offset) AS birth_t
    FROM tcpcong_rows e
    JOIN files_in_captures f USING (filename)
    WHERE e.kind = 'tcp_state' AND e.new_state IN ('syn_sent', 'syn_recv')
    GROUP BY f.boot_id, f.capture_no, e.flow
),
-- What came before each event in its segment: the last ca_state/close
-- "anchor" (its new state, or '' for a close), and whether an `established`
-- followed it; the segment's first event (head); whether the flow was
-- closed before, in any segment (the engine's `reused`). The anchor is the
-- latest of seq * 8 + the state's code (0 for a close): one max() instead
-- of last_value(... IGNORE NULLS), which the two dialects spell apart.
ctx AS (
    SELECT *,
           max(CASE WHEN is_ca OR is_close THEN
                   seq * 8 + CASE WHEN is_close THEN 0
                                  WHEN new_state = 'open' THEN 1
                                  WHEN new_state = 'disorder' THEN 2
                                  WHEN new_state = 'cwr' THEN 3
                                  WHEN new_state = 'recovery' THEN 4
                                  ELSE 5 END
               END) OVER w AS anchor,
           max(CASE WHEN is_est THEN seq END) OVER w AS last_est_seq,
           first_value(is_ca) OVER s     AS seg_first_is_ca,
           first_value(is_snap) OVER s   AS seg_first_is_snap,
           first_value(old_state) OVER s AS seg_first_old,
           first_value(new_state) OVER s AS seg_first_new,
           coalesce(bool_or(is_close) OVER (
                        PARTITION BY boot_id, flow ORDER BY seq
                        ROWS BETWEEN UNBOUNDED PRECEDING AND 1 PRECEDING),
                    false) AS closed_before
    FROM ev
    WINDOW w AS (PARTITION BY boot_id, flow, capture_no ORDER BY seq
                 ROWS BETWEEN UNBOUNDED PRECEDING AND 1 PRECEDING),
           s AS (PARTITION BY boot_id, flow, capture_no ORDER BY seq
                 ROWS BETWEEN UNBOUNDED PRECEDING AND UNBOUNDED FOLLOWING)
),
-- cur: the state the flow is in just before the event (NULL: none, which
-- is also what a new segment starts from).
anchored AS (
    SELECT *,
           CAST(floor(anchor / 8) AS BIGINT) AS anchor_seq,
           CASE anchor % 8 WHEN 0 THEN '' WHEN 1 THEN 'open' WHEN 2 THEN 'disorder'
                           WHEN 3 THEN 'cwr' WHEN 4 THEN 'recovery' WHEN 5 THEN 'loss'
           END AS anchor_state
    FROM ctx
),
cur AS (
    SELECT *,
           CASE WHEN anchor_state <> '' THEN anchor_state
                WHEN last_est_seq > coalesce(anchor_seq, 0) THEN 'open'
           END AS cur_before
    FROM anchored
),
-- The head's fate (Full only). g_seq: in the segment, the first event after
-- its first one that moves a flow whose first event was a self-transition.
-- seg_reused: the flow was closed before the segment began (no head).
head_end AS (
    SELECT *,
           min(CASE WHEN seg_seq > 1 AND (is_est OR is_close OR is_snap OR
                        (is_ca AND NOT (old_state = seg_first_old
                                        AND new_state = seg_first_old)))
                    THEN seq END)
               OVER (PARTITION BY boot_id, flow, capture_no) AS g_seq,
           first_value(closed_before) OVER (
               PARTITION BY boot_id, flow, capture_no ORDER BY seq
               ROWS BETWEEN UNBOUNDED PRECEDING AND UNBOUNDED FOLLOWING) AS seg_reused
    FROM cur
),
-- The bounds that apply to the segment: the data set's start (clipping)
-- and end, and its own capture's span (head start, tail end) and lifecycle.
bounded AS (
    SELECT h.*, d.start_ns, d.full_acc,
           c.cap_start_ns                 AS cap_start_ns,
           least(c.cap_end_ns, d.end_ns)  AS tail_end_ns,
           c.cap_lifecycle                AS tail_lifecycle,
           first_value(h.capture_no) OVER fl AS flow_first_capture,
           first_value(h.t) OVER fl          AS flow_first_t,
           b.birth_t
    FROM head_end h
    CROSS JOIN dataset d
    JOIN captures c ON c.boot_id = h.boot_id AND c.capture_no = h.capture_no
    LEFT JOIN births b ON b.boot_id = h.boot_id AND b.flow = h.flow AND b.capture_no = h.capture_no
    WINDOW fl AS (PARTITION BY h.boot_id, h.flow ORDER BY h.seq
                  ROWS BETWEEN UNBOUNDED PRECEDING AND UNBOUNDED FOLLOWING)
),
-- The socket's birth bounds its first timeline: a birth in the capture of
-- the flow's first counted event, before it (Full accounting only).
born AS (
    SELECT *,
           CASE WHEN full_acc AND capture_no = flow_first_capture AND birth_t < flow_first_t
                THEN birth_t END AS born_t
    FROM bounded
),
heads AS (
    SELECT *,
           coalesce(born_t, cap_start_ns) AS head_from_ns,
           -- the segment has a head: Full, first event a ca_state event,
           -- the flow never closed before; unless born and that first event
           -- is a self-transition (then it has been in that state since
           -- its birth: one period, no head)
           full_acc AND seg_first_is_ca AND NOT seg_reused
               AND NOT (born_t IS NOT NULL AND seg_first_old = seg_first_new) AS has_head
    FROM born
),
classified AS (
    SELECT *,
           -- head pending until g_seq, and g_seq is an `established`: discarded
           -- (never when born before: the birth bounded the head already)
           (has_head AND born_t IS NULL AND seg_first_old = seg_first_new
                AND NOT seg_first_is_snap AND g_seq IS NOT NULL
                AND max(CASE WHEN seq = g_seq AND is_est THEN 1 ELSE 0 END)
                        OVER (PARTITION BY boot_id, flow, capture_no) = 1) AS head_discarded,
           is_ca AND cur_before IS NOT NULL AND old_state <> cur_before AS is_mismatch,
           is_ca AND cur_before IS NOT NULL AND old_state = cur_before
                 AND new_state <> cur_before                          AS is_change_from_cur,
           -- where a dwell period begins (the engine's `begin`)
           CASE
               WHEN is_ca THEN NOT (cur_before IS NOT NULL
                                    AND old_state = cur_before AND new_state = cur_before)
               WHEN is_est THEN cur_before IS NULL
               ELSE false
           END AS begins_plain
    FROM heads
),
periods AS (
    SELECT *,
           -- the established that discards a head also restarts the period
           begins_plain OR (head_discarded AND seq = g_seq) AS begins,
           -- when the period it begins started: at the birth for the first
           -- event of a born socket that is a self-transition or its
           -- `established` (in Open since then), at the event otherwise
           CASE WHEN seg_seq = 1 AND born_t IS NOT NULL
                     AND (is_est OR (is_ca AND old_state = new_state))
                THEN born_t ELSE t END AS begin_t,
           -- state after the event
           CASE WHEN is_ca THEN new_state
                WHEN is_close THEN NULL
                WHEN is_est THEN coalesce(cur_before, 'open')
                ELSE cur_before
           END AS cur_after
    FROM classified
),
-- Periods never run from one segment into the next.
timed AS (
    SELECT *,
           max(CASE WHEN begins THEN begin_t END) OVER (
               PARTITION BY boot_id, flow, capture_no ORDER BY seq
               ROWS BETWEEN UNBOUNDED PRECEDING AND 1 PRECEDING) AS period_start,
           max(CASE WHEN begins THEN begin_t END) OVER (
               PARTITION BY boot_id, flow, capture_no ORDER BY seq
               ROWS BETWEEN UNBOUNDED PRECEDING AND CURRENT ROW) AS period_start_after,
           max(CASE WHEN is_snap THEN t END) OVER (
               PARTITION BY boot_id, flow, capture_no ORDER BY seq
               ROWS BETWEEN UNBOUNDED PRECEDING AND 1 PRECEDING) AS snap_before,
           max(CASE WHEN is_snap THEN t END) OVER (
               PARTITION BY boot_id, flow, capture_no ORDER BY seq
               ROWS BETWEEN UNBOUNDED PRECEDING AND CURRENT ROW) AS snap_until,
           seq = max(seq) OVER (PARTITION BY boot_id, flow, capture_no) AS is_seg_last
    FROM periods
),
-- A snapshot credits the period in progress up to it: what follows it is
-- credited from there (credit_from before the row, credit_from_after
-- after it; a snapshot from an earlier period is older than the period).
sliced AS (
    SELECT *,
           greatest(period_start, coalesce(snap_before, period_start))           AS credit_from,
           greatest(period_start_after, coalesce(snap_until, period_start_after)) AS credit_from_after
    FROM timed
),
-- Every credited interval [from, to) in a state.
credits AS (
    -- a change ends the period in cur (both modes)
    SELECT boot_id, flow, cur_before AS state, credit_from AS c_from, t AS c_to,
           start_ns
    FROM sliced WHERE is_change_from_cur
    UNION ALL
    -- a close ends the period in progress (Full)
    SELECT boot_id, flow, cur_before, credit_from, t, start_ns
    FROM sliced WHERE is_close AND full_acc AND cur_before IS NOT NULL
    UNION ALL
    -- a snapshot: the period in progress, since its start (a birth for a
    -- born socket's first row) or the last snapshot, up to it (Full)
    SELECT boot_id, flow, cur_after,
           greatest(period_start_after, coalesce(snap_before, period_start_after)), t, start_ns
    FROM sliced WHERE is_snap AND cur_after IS NOT NULL
    UNION ALL
    -- tail: the state after the segment's last event, up to the end of the
    -- segment's own capture (Full, and that capture has lifecycle events)
    SELECT boot_id, flow, cur_after, credit_from_after, tail_end_ns, start_ns
    FROM sliced WHERE is_seg_last AND full_acc AND tail_lifecycle AND cur_after IS NOT NULL
    UNION ALL
    -- head: before the segment's first event, in its old state, from the
    -- start of the segment's capture (Full; credited even when still
    -- pending at the segment's end)
    SELECT boot_id, flow, old_state, head_from_ns, t, start_ns
    FROM sliced WHERE seg_seq = 1 AND has_head AND NOT head_discarded
),
-- Clipped to the data set's start; empty intervals credit nothing.
credited AS (
    SELECT boot_id, flow, state, c_to - greatest(c_from, start_ns) AS ns
    FROM credits
    WHERE c_to > greatest(c_from, start_ns)
),
time_per_flow AS (
    SELECT boot_id, flow,
           CAST(sum(ns) FILTER (WHERE state = 'open') AS BIGINT) AS open_ns,
           CAST(sum(ns) FILTER (WHERE state = 'disorder') AS BIGINT) AS disorder_ns,
           CAST(sum(ns) FILTER (WHERE state = 'cwr') AS BIGINT) AS cwr_ns,
           CAST(sum(ns) FILTER (WHERE state = 'recovery') AS BIGINT) AS recovery_ns,
           CAST(sum(ns) FILTER (WHERE state = 'loss') AS BIGINT) AS loss_ns,
           count(*) AS credits
    FROM credited GROUP BY boot_id, flow
),
counts_per_flow AS (
    SELECT boot_id, flow,
           any_value(host) AS host,
           any_value(family) FILTER (WHERE seq = 1) AS family,
           any_value(saddr)  FILTER (WHERE seq = 1) AS saddr,
           any_value(sport)  FILTER (WHERE seq = 1) AS sport,
           any_value(daddr)  FILTER (WHERE seq = 1) AS daddr,
           any_value(dport)  FILTER (WHERE seq = 1) AS dport,
           -- Between accounting: a timeline's first event (no state yet)
           -- only starts the clock, as in BCC
           count(*) FILTER (WHERE is_ca AND new_state <> old_state AND t >= start_ns
                                  AND (full_acc OR cur_before IS NOT NULL)) AS changes,
           count(*) FILTER (WHERE is_mismatch AND t >= start_ns) AS mismatches
    FROM timed GROUP BY boot_id, flow
)
SELECT c.flow, c.family, c.saddr, c.sport, c.daddr, c.dport,
       coalesce(d.open_ns, 0)     AS open_ns,
       coalesce(d.disorder_ns, 0) AS disorder_ns,
       coalesce(d.cwr_ns, 0)      AS cwr_ns,
       coalesce(d.recovery_ns, 0) AS recovery_ns,
       coalesce(d.loss_ns, 0)     AS loss_ns,
       c.changes,
       c.host,
       c.boot_id,
       c.mismatches
FROM counts_per_flow c
LEFT JOIN time_per_flow d USING (boot_id, flow)
WHERE coalesce(d.credits, 0) > 0 OR c.changes > 0 OR c.mismatches > 0
ORDER BY c.sport, c.saddr, c.daddr, c.dport, c.boot_id, c.flow;
