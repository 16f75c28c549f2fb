/*
 * logseg_fuzz.c -- libFuzzer entry point for the log segment scan behind
 * the start-up repair (shard/shard_logseg.c, shard_logseg_scan).
 *
 * The whole input is a segment file as a crash or a foreign program may
 * have left it.  Seeds: tests/fuzz/corpus/logseg (a closed segment of two
 * records, the same cut inside its last block, and a plain JSON line).
 *
 * Besides the sanitizers, the run aborts when a promise is broken:
 *   - the scan answers PT_OK or PT_ERROR, and PT_ERROR only for input that
 *     does not start with a zstd frame header Petrel writes;
 *   - the good length never passes the input, and is 0 unless a block ends
 *     there (so it is at least a frame header long);
 *   - "complete" only with a good length;
 *   - the scan of the input cut at the good length finds the same length
 *     (a repaired file scans the same again);
 *   - the good prefix closed with the epilogue, handed to zstd, gives an
 *     answer (decoded or an error), never a crash.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <zstd.h>

#include "shard/shard_logseg.h"

static void fuzz_fail(const char *what)
{
	fprintf(stderr, "logseg_fuzz: broken promise: %s\n", what);
	abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t len)
{
	static char out[1 << 16];
	size_t good, again;
	bool complete, complete_again;
	int rc = shard_logseg_scan(data, len, &good, &complete);
	uint8_t *fixed;
	ZSTD_DCtx *d;
	ZSTD_inBuffer in;

	if (rc != PT_OK && rc != PT_ERROR)
		fuzz_fail("scan status");
	if (rc == PT_ERROR) {
		if (len >= 4 && memcmp(data, "\x28\xb5\x2f\xfd", 4) == 0 && len >= 5 &&
		    (data[4] & 0x0c) == 0)
			fuzz_fail("PT_ERROR for a frame header Petrel writes");
		return 0;
	}
	if (good > len || (good != 0 && good < 6) || (complete && good == 0))
		fuzz_fail("good length");
	if (good == 0)
		return 0;
	if (shard_logseg_scan(data, good, &again, &complete_again) != PT_OK || again != good ||
	    complete_again != complete)
		fuzz_fail("a cut at the good length scans the same");
	if ((fixed = malloc(good + 3)) == NULL)
		return 0;
	memcpy(fixed, data, good);
	memcpy(fixed + good, shard_logseg_epilogue, 3);
	d = ZSTD_createDCtx();
	in = (ZSTD_inBuffer){fixed, complete ? good : good + 3, 0};
	while (d != NULL && in.pos < in.size) {
		ZSTD_outBuffer o = {out, sizeof(out), 0};
		size_t r = ZSTD_decompressStream(d, &o, &in);

		if (ZSTD_isError(r) || (r == 0 && o.pos == 0))
			break;
	}
	ZSTD_freeDCtx(d);
	free(fixed);
	return 0;
}
