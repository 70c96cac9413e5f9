/* resolve: the e2e's musl DNS client. Built statically with musl-gcc (Debian's musl-tools), so its
 * getaddrinfo is musl's: it sends the A and AAAA queries of a name at the same time from one socket,
 * which is the pattern that loses replies when a Service proxy races two packets of one UDP flow.
 *
 *   resolve NAME COUNT MAX_MS
 *
 * Resolves NAME COUNT times and exits 1 when a lookup fails or takes longer than MAX_MS. */
#include <netdb.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static long ms_since(const struct timespec *a)
{
	struct timespec b;
	clock_gettime(CLOCK_MONOTONIC, &b);
	return (b.tv_sec - a->tv_sec) * 1000 + (b.tv_nsec - a->tv_nsec) / 1000000;
}

int main(int argc, char **argv)
{
	if (argc != 4) {
		fprintf(stderr, "usage: resolve NAME COUNT MAX_MS\n");
		return 2;
	}
	int count = atoi(argv[2]), fails = 0, slow = 0;
	long max_ms = atol(argv[3]), worst = 0;
	for (int i = 0; i < count; i++) {
		struct addrinfo hints, *res = NULL;
		struct timespec t;
		memset(&hints, 0, sizeof(hints));
		hints.ai_family = AF_UNSPEC; /* A and AAAA, in parallel */
		hints.ai_socktype = SOCK_STREAM;
		clock_gettime(CLOCK_MONOTONIC, &t);
		int rc = getaddrinfo(argv[1], NULL, &hints, &res);
		long ms = ms_since(&t);
		if (ms > worst)
			worst = ms;
		if (rc != 0) {
			fails++;
			fprintf(stderr, "lookup %d: %s after %ld ms\n", i, gai_strerror(rc), ms);
		} else if (ms > max_ms) {
			slow++;
			fprintf(stderr, "lookup %d: %ld ms\n", i, ms);
		}
		if (res)
			freeaddrinfo(res);
	}
	printf("resolve %s: %d lookups, %d failed, %d over %ld ms, slowest %ld ms\n", argv[1], count, fails, slow,
	       max_ms, worst);
	return fails || slow ? 1 : 0;
}
