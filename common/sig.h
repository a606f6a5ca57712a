/* Signal handling: SIGTERM and SIGINT set sig_stop (the process finishes cleanly at its
 * next poll); SIGPIPE is ignored so a closed pipe on stdout is an EPIPE write error. */
#ifndef NPID_SIG_H
#define NPID_SIG_H
#include <signal.h>
extern volatile sig_atomic_t sig_stop;      /* set by SIGTERM / SIGINT */
extern volatile sig_atomic_t sig_stop_signo; /* which one */
int sig_install(void);                       /* 0 or -1 (errno set) */
#endif
