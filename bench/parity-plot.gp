# Parity curves: weighted-kNN top-1 per epoch, npid vs the PyTorch peer, against the bank and
# against recomputed train features; the mean over seeds with the seeds' range as error bars.
# usage: gnuplot -e "datafile='parity.dat'; outfile='parity.png'; epochs=3" bench/parity-plot.gp
# datafile columns (percent): epoch, then mean min max of npid_bank, npid_recomputed,
# peer_bank, peer_recomputed
if (!exists("datafile")) datafile = 'parity.dat'
if (!exists("outfile")) outfile = 'parity.png'
if (!exists("title")) title = 'kNN top-1 (k 200, sigma 0.1), CIFAR-10 test: mean and range over seeds'
set terminal pngcairo size 900,520 noenhanced font ',11'
set output outfile
set title title
set xlabel 'epoch'
set ylabel 'top-1 (%)'
set key outside right top
set grid
set xtics 1
if (exists("epochs")) set xrange [0.5:epochs + 0.5]
set yrange [0:*]
set offsets 0.2, 0.2, 0, 0
plot datafile using ($1-0.03):5:6:7 with yerrorlines lw 2 pt 7 lc rgb '#1f77b4' title 'npid recomputed', \
     datafile using ($1-0.03):2:3:4 with yerrorlines lw 2 pt 5 dt 2 lc rgb '#1f77b4' title 'npid bank', \
     datafile using ($1+0.03):11:12:13 with yerrorlines lw 2 pt 7 lc rgb '#d62728' title 'peer recomputed', \
     datafile using ($1+0.03):8:9:10 with yerrorlines lw 2 pt 5 dt 2 lc rgb '#d62728' title 'peer bank'
