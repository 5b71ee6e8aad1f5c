# Charts for bench/compare (called by summarize.py):
#   gnuplot -e "datadir='DIR'; outdir='DIR'; lattable='1'; rate='1000'" plot.gp
# DIR/msgs.dat, logins.dat: "server table1 table2"; rss.dat: "server all_bound after_hold" (table
# lattable); latency.dat: "server p50 p99 p999" (table lattable).
set terminal pngcairo size 720,420 font "DejaVu Sans,10" noenhanced
set style data histograms
set style histogram clustered gap 1
set style fill solid 0.85 border -1
set boxwidth 0.9
set grid ytics
set key top right
set yrange [0:*]
set format y "%.0f"

set output outdir."/msgs_per_s.png"
set title "Chat messages delivered per second (window-paced, medians)"
set ylabel "msgs/s"
plot datadir."/msgs.dat" using 2:xtic(1) title "table 1: 1 core", '' using 3 title "table 2: 2 cores (generator shares them)"

set output outdir."/logins_per_s.png"
set title "Logins per second (SASL PLAIN, SCRAM-SHA-1 4096 stored, medians)"
set ylabel "logins/s"
plot datadir."/logins.dat" using 2:xtic(1) title "table 1: 1 core", '' using 3 title "table 2: 2 cores"

set output outdir."/rss_per_session.png"
set title "Server RSS per idle authenticated session (VmRSS delta / sessions, table ".lattable.")"
set ylabel "bytes"
plot datadir."/rss.dat" using 2:xtic(1) title "all sessions just bound", '' using 3 title "after the hold (idle)"

set output outdir."/latency.png"
set title "Chat latency at a fixed offered rate of ".rate." msgs/s (table ".lattable.", medians)"
set ylabel "ms (log scale)"
set logscale y
set yrange [*:*]
set format y "%g"
plot datadir."/latency.dat" using 2:xtic(1) title "p50", '' using 3 title "p99", '' using 4 title "p99.9"
