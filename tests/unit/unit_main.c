/*
 * unit_main.c -- runs every unit suite and prints the summary line.
 */
#include <stdarg.h>
#include <stdio.h>

#include "harness.h"

unsigned long unit_passed;
unsigned long unit_failed;

void unit_fail(const char *file, int line, const char *fmt, ...)
{
    va_list ap;

    unit_failed++;
    fprintf(stderr, "%s:%d: FAIL: ", file, line);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
}

int main(void)
{
    test_utf8();
    test_close();
    test_frame();
    test_handshake();
    test_origin();
    test_addrtab();
    test_deflate();
    fflush(stderr);
    printf("unit: %lu passed, %lu failed\n", unit_passed, unit_failed);
    return unit_failed ? 1 : 0;
}
