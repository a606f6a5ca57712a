#include "common/sig.h"
#include <string.h>

volatile sig_atomic_t sig_stop = 0;
volatile sig_atomic_t sig_stop_signo = 0;

static void sig_on_stop(int signo)
{
    sig_stop = 1;
    sig_stop_signo = signo;
}

int sig_install(void)
{
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = sig_on_stop;
    sigemptyset(&sa.sa_mask);
    /* no SA_RESTART: blocking calls (zmq_poll, read) return EINTR so loops see the flag */
    if (sigaction(SIGTERM, &sa, NULL) != 0 || sigaction(SIGINT, &sa, NULL) != 0)
        return -1;
    signal(SIGPIPE, SIG_IGN);
    return 0;
}
