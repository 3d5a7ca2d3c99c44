/* A process whose main thread calls pthread_exit while a worker sleeps: its leader shows as a
   zombie (Z) in /proc, yet the process runs. Built with the system's cc by the target.rs unit
   test and the e2e suite (sidecar.rs). */
#include <pthread.h>
#include <unistd.h>
static void *worker(void *a) { (void)a; sleep(600); return 0; }
int main(void) { pthread_t t; pthread_create(&t, 0, worker, 0); pthread_exit(0); }
