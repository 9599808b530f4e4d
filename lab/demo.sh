#!/usr/bin/env bash
# `make demo`: records a few seconds of real congestion in a private lossy
# namespace into demo.parquet, shows what analyze makes of it, and writes
# demo.html, the report page, beside it.
set -euo pipefail
cd "$(dirname "$0")/.."
bin=${TCPCONG:-target/release/tcpcong}
ns=tc-demo-$$
trap 'lab/lab.sh down $ns' EXIT

echo "== a private namespace whose loopback drops 2 % of the packets to port 5201"
lab/lab.sh up "$ns" --loss 2
echo "== recording 6 s while iperf3 sends for 4 s (cubic) inside it"
"$bin" record -o demo.parquet --force --netns "/var/run/netns/$ns" --duration 6 &
rec=$!
sleep 1
lab/lab.sh traffic "$ns" 4
wait $rec
echo
echo "== tcpcong analyze demo.parquet            (time per state, per flow)"
"$bin" analyze demo.parquet
echo
echo "== tcpcong analyze demo.parquet -d 2       (2-second windows, histograms)"
"$bin" analyze demo.parquet -d 2 1
echo
echo "== the same file in DuckDB"
python3 - <<'PY'
import duckdb
duckdb.sql("""
    select kind, old_state, new_state, count(*) as events
    from 'demo.parquet' group by all order by events desc limit 8""").show()
PY
echo
echo "== tcpcong report demo.parquet -o demo.html   (one page to open in a browser)"
"$bin" report demo.parquet -o demo.html
echo "open $(pwd)/demo.html"
