set terminal pngcairo size 900,500
set output 'bench/ratios.png'
set title 'flannel-probe: probe on / probe off, per interleaved pair (hollow: off / off)'
set xlabel 'pair (odd: off run first; even: on run first)'
set ylabel 'on / off'
set xrange [0.5:9.5]
set yrange [0.752:1.325]
set xtics 1
set grid ytics
set key below
plot 'bench/ratios.dat' using 1:2 with linespoints lw 2 pt 7 title 'TCP throughput', \
     'bench/ratios.dat' using 1:3 with linespoints lw 2 pt 5 title '64-byte UDP pps (received)', \
     'bench/ratios.dat' using 1:4 with points pt 6 ps 1.5 lc rgb '#9467bd' title 'control TCP (off/off)', \
     'bench/ratios.dat' using 1:5 with points pt 4 ps 1.5 lc rgb '#2ca02c' title 'control UDP (off/off)', \
     0.99 with lines dt 2 lc rgb '#1f77b4' title 'TCP target 0.99', \
     0.98 with lines dt 2 lc rgb '#ff7f0e' title 'UDP target 0.98', \
     1 with lines lc rgb '#888888' notitle
