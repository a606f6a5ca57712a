/* Clocks: monotonic nanoseconds for durations, wall-clock milliseconds for records. */
#ifndef NPID_CLOCK_H
#define NPID_CLOCK_H
#include <stdint.h>
uint64_t clock_now_ns(void);   /* CLOCK_MONOTONIC */
uint64_t clock_wall_ms(void);  /* CLOCK_REALTIME, ms since the epoch */
double clock_seconds(void);    /* CLOCK_MONOTONIC as seconds */
#endif
