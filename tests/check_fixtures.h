/* Shared by the decoder suites (check_jpeg.c, check_image.c): a temporary directory holding
 * every bad-image fixture (tests/fixtures/bad-images/mkbad.c), made before each test and
 * removed after, and load() of one file from it. Define FIXTURE_SUITE ("jpeg", "image")
 * before including: it names the directory. */
#ifndef NPID_CHECK_FIXTURES_H
#define NPID_CHECK_FIXTURES_H

#include <check.h>
#include <stdio.h>
#include <stdlib.h>

#include "common/durable.h"

#define MKBAD_NO_MAIN
#include "fixtures/bad-images/mkbad.c"

static char tmpdir[256];

static void setup(void)
{
    snprintf(tmpdir, sizeof tmpdir, "/tmp/npid-check-%s.XXXXXX", FIXTURE_SUITE);
    ck_assert_ptr_nonnull(mkdtemp(tmpdir));
    ck_assert_int_eq(mkbad_write_all(tmpdir), 0);
}

static void teardown(void)
{
    char cmd[512];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", tmpdir);
    ck_assert_int_eq(system(cmd), 0);
}

static void *load(const char *name, size_t *len)
{
    char path[512];
    void *buf = NULL;
    snprintf(path, sizeof path, "%s/%s", tmpdir, name);
    ck_assert_msg(file_read_all(path, 1 << 24, &buf, len) == 0, "cannot read %s", path);
    return buf;
}

#endif
